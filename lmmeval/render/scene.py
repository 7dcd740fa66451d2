"""One mesh, one camera on the Gen3DHF orbit -> one frame, through Mitsuba 3.

The light is fixed and follows the camera: a point light at the camera (direct light only, so a
few samples per pixel give a clean image) plus a constant ambient term (the surface's albedo, an
AOV of the same pass). The background is the studio gradient `lmmeval synth` uses. Framing comes
from the mesh's bounding sphere (``assets.load_asset`` scales it to radius 1): the same apparent size
for every asset.

Which Mitsuba variant renders (``pick_variant``): CUDA where a GPU answers; on a CPU the LLVM one
(Dr.Jit's vectorised backend: about 10 times the scalar one's speed on a core), which needs a
system libLLVM; where none loads, the scalar one, with a note saying how to get the fast one.
``LMMEVAL_RENDER_VARIANT`` forces one (``VARIANTS``). Their frames agree to sampling noise at
silhouettes, not bit for bit, so a render's key names the variant's family (``variant_family``).
A frame's samples are seeded by its index: the same frame whatever the thread count.

Mitsuba catches SIGINT while it renders, whatever handler was set before (SIG_IGN included), and
may stop early, returning the frame as far as it got (dark tiles); its integrator's
``should_stop()`` then says so, and ``FrameRenderer.render`` raises ``FrameInterrupted`` rather
than return such a frame. The LLVM variant heeds it only while it traces a pass (a millisecond or
so: the kernels run after, whole), so its frames are never cut, only refused; but a SIGINT there
now and then deadlocks its render. Frames are rendered in worker processes that block SIGINT
(``lmmeval.render.worker``) and that a Ctrl-C does not reach (``lmmeval.render.pool``).
"""

from __future__ import annotations

import os

import numpy as np

from ..orbit import camera_direction
from .assets import HeadMesh, srgb_to_linear

# Bump when anything that changes the pixels of a render changes: the scene, camera, light and
# background here, the framing and colour handling of ``assets`` (its texture cap included), the
# orbit. Cached renders are keyed on it and on the variant's family (``lmmeval.render.keys.render_key``).
RENDERER_VERSION = 1

FIELD_OF_VIEW_DEG = 30.0
MARGIN = 1.12  # the bounding sphere fills the frame's height to 1/MARGIN
AMBIENT = 0.22  # the ambient term, a share of the albedo
HEADLIGHT = 0.85  # radiance of a white surface facing the camera, from the headlight
BACKGROUND_TOP_SRGB = (0.80, 0.82, 0.86)
BACKGROUND_BOTTOM_SRGB = (0.55, 0.57, 0.62)


def camera_distance() -> float:
    """Distance of the camera from the head's centre that frames its bounding sphere (radius 1)."""
    return MARGIN / np.sin(np.deg2rad(FIELD_OF_VIEW_DEG) / 2)


# Variants that render one frame over the whole machine (the GPU): one process of them at a time.
# The CPU ones render a frame per process on one core, so they run in several: the LLVM variant too
# (``worker`` gives it one thread), as tracing a frame's kernels is serial and processes side by side
# overlap it with the others' kernels (on 2 cores: 0.15 s a frame against 0.17 s for one process of
# two threads).
SINGLE_PROCESS_VARIANTS = ("cuda_",)
# The variants lmmeval renders with, and the environment variable that forces one of them.
VARIANTS = ("scalar_rgb", "llvm_ad_rgb", "cuda_ad_rgb")
VARIANT_ENV = "LMMEVAL_RENDER_VARIANT"
SLOW_NOTE = ("lmmeval: Mitsuba's fast CPU renderer (LLVM) does not load here, so frames render on the scalar "
             "one, about 8 times slower; install a system libLLVM (e.g. apt install libllvm15) or set "
             "DRJIT_LIBLLVM_PATH to a libLLVM.so")


class FrameInterrupted(RuntimeError):
    """Mitsuba stopped a frame early (a SIGINT reached the process that renders it)."""


def requested_variant() -> str | None:
    """The variant ``LMMEVAL_RENDER_VARIANT`` forces (None when unset); ``ValueError`` for a name
    that is not one of ``VARIANTS``. Needs no Mitsuba: callers check it before anything starts."""
    value = os.environ.get(VARIANT_ENV, "").strip()
    if not value:
        return None
    if value not in VARIANTS:
        raise ValueError(f"{VARIANT_ENV}={value!r} is not a render variant: give one of {', '.join(VARIANTS)} "
                         "(or unset it to choose by the machine)")
    return value


def variant_family(variant: str) -> str:
    """The backend of a variant (scalar, llvm, cuda), which a render's key names: the backends draw
    their samples differently, so their frames differ slightly."""
    return variant.split("_", 1)[0]


def pick_variant(prefer_gpu: bool = True) -> tuple[str, str | None]:
    """Set Mitsuba's variant; returns (variant, a note for the user or None).

    The forced one (``requested_variant``), or CUDA where a GPU answers (and was asked for), else
    LLVM where a libLLVM loads, else the scalar one, noted (``SLOW_NOTE``). A forced variant that
    does not load is a ``ValueError`` naming it. Dr.Jit's own checks are asked, not torch's:
    importing torch would cost every render process seconds and hundreds of MB."""
    forced = requested_variant()
    with _stderr_held_back():  # Dr.Jit tries its backends as it is imported, and says so where one fails
        import drjit  # noqa: F401
        import mitsuba as mi
    if forced is not None:
        if not variant_loads(forced):
            raise ValueError(f"{VARIANT_ENV}={forced}: Mitsuba's {forced} variant does not load here ("
                             + ("no CUDA device or driver" if forced.startswith("cuda") else
                                "no libLLVM found; DRJIT_LIBLLVM_PATH names one" if forced.startswith("llvm")
                                else "not in this Mitsuba build") + "); unset it to choose by the machine")
        mi.set_variant(forced)
        return forced, None
    for variant in (("cuda_ad_rgb",) if prefer_gpu else ()) + ("llvm_ad_rgb",):
        if variant_loads(variant):
            mi.set_variant(variant)
            return variant, None
    mi.set_variant("scalar_rgb")
    return "scalar_rgb", SLOW_NOTE


def variant_loads(variant: str) -> bool:
    """Whether ``variant`` is built into Mitsuba and its Dr.Jit backend initialises here. Dr.Jit
    prints why a backend fails (a library not found) straight to the C stderr: held back, the
    caller says it in one line (``SLOW_NOTE``, or a forced variant's error)."""
    import mitsuba as mi

    if variant not in mi.variants():
        return False
    if variant == "scalar_rgb":
        return True
    import drjit as dr

    backend = dr.JitBackend.CUDA if variant.startswith("cuda") else dr.JitBackend.LLVM
    try:
        with _stderr_held_back():
            return bool(dr.has_backend(backend))
    except Exception:  # a backend whose library loads but fails (a driver): not usable here
        return False


class _stderr_held_back:
    """File descriptor 2 points at /dev/null inside the block (native libraries write there)."""

    def __enter__(self):
        import sys

        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)


def single_process(variant: str) -> bool:
    """Whether ``variant`` renders in one process only (see ``SINGLE_PROCESS_VARIANTS``)."""
    return variant.startswith(SINGLE_PROCESS_VARIANTS)


class FrameRenderer:
    """Renders frames of one mesh at any azimuth; the scene is built once."""

    def __init__(self, head: HeadMesh, size: int, spp: int, variant: str = "scalar_rgb"):
        import mitsuba as mi

        mi.set_variant(variant)
        self.mi, self.size, self.spp = mi, size, spp
        self.mesh = _mitsuba_mesh(mi, head)
        # The LLVM variant renders the light and the albedo in two passes, a third faster than the AOV
        # integrator wrapping the direct one in one (its AOVs draw no samples: the same pixels).
        self.passes = ([mi.load_dict({"type": "direct"}), mi.load_dict({"type": "aov", "aovs": "albedo:albedo"})]
                       if variant.startswith("llvm") else [None])
        rows = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
        top, bottom = (srgb_to_linear(np.array(c, np.float32)) for c in (BACKGROUND_TOP_SRGB, BACKGROUND_BOTTOM_SRGB))
        self.background = np.broadcast_to(top * (1 - rows) + bottom * rows, (size, size, 3))  # linear

    def render(self, azimuth_deg: float, seed: int = 0) -> np.ndarray:
        """uint8 RGB (size, size, 3) of the head seen from ``azimuth_deg`` on the orbit."""
        mi = self.mi
        distance = camera_distance()
        eye = (distance * camera_direction(azimuth_deg)).tolist()
        # A point light's radiance falls with the square of the distance: scaled to the face's distance.
        intensity = HEADLIGHT * np.pi * (distance - 1.0) ** 2
        scene = mi.load_dict({
            "type": "scene",
            "integrator": {"type": "aov", "aovs": "albedo:albedo", "integrator": {"type": "direct"}},
            "sensor": {"type": "perspective", "fov": FIELD_OF_VIEW_DEG, "fov_axis": "y",
                       "to_world": mi.ScalarTransform4f().look_at(origin=eye, target=[0, 0, 0], up=[0, 1, 0]),
                       "film": {"type": "hdrfilm", "width": self.size, "height": self.size, "pixel_format": "rgba",
                                "rfilter": {"type": "box"}},
                       "sampler": {"type": "independent", "sample_count": self.spp}},
            "light": {"type": "point", "position": eye, "intensity": {"type": "rgb", "value": float(intensity)}},
            "head": self.mesh,
        })
        # (h, w, 7): RGBA of the light, then albedo
        out = np.concatenate([np.array(mi.render(scene, seed=seed, integrator=integrator), dtype=np.float32)
                              for integrator in self.passes], axis=-1)
        if any((integrator or scene.integrator()).should_stop() for integrator in self.passes):
            # cut short by a SIGINT: part of the image may be missing
            raise FrameInterrupted(f"the frame at azimuth {azimuth_deg:g} was interrupted")
        rgb, alpha, albedo = out[..., :3], out[..., 3:4], out[..., 4:7]
        lit = rgb + AMBIENT * albedo  # the two terms, each already weighted by pixel coverage
        image = lit + (1.0 - alpha) * self.background
        return _to_srgb8(image)


def _mitsuba_mesh(mi, head: HeadMesh):
    mesh = mi.Mesh("head", len(head.vertices), len(head.faces), has_vertex_normals=True,
                   has_vertex_texcoords=head.uvs is not None)
    params = mi.traverse(mesh)
    floats, ints = type(params["vertex_positions"]), type(params["faces"])
    params["vertex_positions"] = floats(np.ascontiguousarray(head.vertices, np.float32).ravel())
    params["faces"] = ints(np.ascontiguousarray(head.faces, np.uint32).ravel())
    params["vertex_normals"] = floats(np.ascontiguousarray(head.normals, np.float32).ravel())
    if head.uvs is not None:
        params["vertex_texcoords"] = floats(np.ascontiguousarray(head.uvs, np.float32).ravel())
    params.update()
    if head.texture is not None:
        texture = head.texture
        if not (texture.flags.writeable and texture.flags.c_contiguous and texture.dtype == np.float32):
            texture = np.array(texture, dtype=np.float32, copy=True)  # mi.Bitmap takes no read-only array
        reflectance = {"type": "bitmap", "bitmap": mi.Bitmap(texture), "raw": True}  # already linear
    elif head.colors is not None:
        mesh.add_attribute("vertex_color", 3, floats(np.ascontiguousarray(head.colors, np.float32).ravel()))
        reflectance = {"type": "mesh_attribute", "name": "vertex_color"}
    else:
        reflectance = {"type": "rgb", "value": list(head.base_color)}
    mesh.set_bsdf(mi.load_dict({"type": "diffuse", "reflectance": reflectance}))
    return mesh


def _to_srgb8(linear: np.ndarray) -> np.ndarray:
    v = np.clip(linear, 0.0, 1.0)
    srgb = np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1 / 2.4) - 0.055)
    return (srgb * 255.0 + 0.5).astype(np.uint8)
