"""One mesh, one camera on the Gen3DHF orbit -> one frame, through Mitsuba 3.

The light is fixed and follows the camera: a point light at the camera (direct light only, so a
few samples per pixel give a clean image) plus a constant ambient term (the surface's albedo, an
AOV of the same pass). The background is the studio gradient `lmmeval synth` uses. Framing comes
from the mesh's bounding sphere (``assets.load_asset`` scales it to radius 1): the same apparent size
for every asset. Mitsuba's scalar CPU variant renders everywhere; a CUDA variant is used when a GPU
is there.

Mitsuba catches SIGINT while it renders, whatever handler was set before (SIG_IGN included), and
may stop early, returning the frame as far as it got (dark tiles); its integrator's
``should_stop()`` then says so, and ``FrameRenderer.render`` raises ``FrameInterrupted`` rather
than return such a frame. Frames are rendered in worker processes that a Ctrl-C does not reach
(``lmmeval.render.pool``).
"""

from __future__ import annotations

import numpy as np

from ..orbit import camera_direction
from .assets import HeadMesh, srgb_to_linear

# Bump when anything that changes the pixels of a render changes: the scene, camera, light and
# background here, the framing and colour handling of ``assets`` (its texture cap included), the
# orbit. Cached renders are keyed on it (``lmmeval.render.keys.render_key``).
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


# Variants that render one frame over the whole machine (every core, or the GPU): one process of
# them at a time. The scalar variant renders one frame per process, so it runs in several.
SINGLE_PROCESS_VARIANTS = ("cuda_", "llvm_")


class FrameInterrupted(RuntimeError):
    """Mitsuba stopped a frame early (a SIGINT reached the process that renders it)."""


def pick_variant(prefer_gpu: bool = True) -> str:
    """Set and return Mitsuba's variant: CUDA where a GPU answers (and was asked for), else the scalar
    CPU one. Dr.Jit's own check is asked, not torch's: importing torch would cost every render
    process seconds and hundreds of MB."""
    import mitsuba as mi

    if prefer_gpu and "cuda_ad_rgb" in mi.variants():
        try:
            import drjit as dr

            if dr.has_backend(dr.JitBackend.CUDA):
                mi.set_variant("cuda_ad_rgb")
                return "cuda_ad_rgb"
        except Exception:  # a CUDA variant that does not load here (driver, library): the CPU one then
            pass
    mi.set_variant("scalar_rgb")
    return "scalar_rgb"


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
        out = np.array(mi.render(scene, seed=seed), dtype=np.float32)  # (h, w, 7): RGBA of the light, then albedo
        if scene.integrator().should_stop():  # cut short by a SIGINT: part of the image is missing
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
