"""A small analytic ray tracer for procedural heads built from ellipsoids.

Why ellipsoids: a ray-ellipsoid hit is a closed-form quadratic, so a whole frame is
a handful of vectorised numpy operations per primitive (no ray marching, no
rasteriser dependency), fast enough to render the paper's 512x512, 60 fps, 4 s
protocol on a CPU. Everything lives in head coordinates: x to the head's left
(viewer's right in the frontal view), y up, z out of the face. The head stays
still and the camera orbits it, like the turntable renders of Gen3DHF; lights are
fixed in the world, so shading changes as the camera moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..orbit import camera_direction

# The camera orbit and lens shared by videos and snapshots.
CAMERA_DISTANCE = 4.6
CAMERA_HEIGHT = 0.15
CAMERA_TARGET = np.array([0.0, -0.1, 0.0], dtype=np.float32)
FIELD_OF_VIEW_DEG = 34.0
BACKGROUND_TOP = np.array([0.80, 0.82, 0.86], dtype=np.float32)
BACKGROUND_BOTTOM = np.array([0.55, 0.57, 0.62], dtype=np.float32)
# Key light from the upper front-left, a dimmer fill from the right, and ambient.
LIGHTS = (
    (np.array([0.5, 0.6, 0.8], dtype=np.float32), 0.75),
    (np.array([-0.8, 0.1, 0.3], dtype=np.float32), 0.30),
)
AMBIENT = 0.28


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (radians): roll about z, then pitch about x, then yaw about y."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (ry @ rx @ rz).astype(np.float32)


@dataclass
class Ellipsoid:
    """One primitive. ``material`` picks the shading; ``params`` feeds it.

    ``clip`` = (normal, offset) in the unit-sphere frame keeps only surface points
    with ``dot(normal, p) >= offset`` (hair caps, hat crowns); rays then see the
    inside of the shell through the cut, as with a real open surface.
    """

    tag: str
    center: np.ndarray
    radii: np.ndarray
    material: str
    rot: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.float32))
    clip: tuple[np.ndarray, float] | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float32)
        self.radii = np.asarray(self.radii, dtype=np.float32)
        self.rot = np.asarray(self.rot, dtype=np.float32)

    def surface_point(self, direction) -> np.ndarray:
        """The surface point along a unit-sphere direction (in the primitive's own frame)."""
        d = np.asarray(direction, dtype=np.float32)
        d = d / np.linalg.norm(d)
        return self.center + self.rot @ (self.radii * d)


@dataclass
class Camera:
    position: np.ndarray  # (3,)
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    focal: float  # pixels
    size: int  # square image, pixels

    def project(self, point: np.ndarray) -> tuple[float, float, float]:
        """World point -> (x, y) pixel coordinates (x = column) and depth along the view axis."""
        rel = np.asarray(point, dtype=np.float32) - self.position
        xc, yc, zc = rel @ self.right, rel @ self.up, rel @ self.forward
        x = self.focal * xc / zc + self.size / 2 - 0.5
        y = -self.focal * yc / zc + self.size / 2 - 0.5
        return float(x), float(y), float(zc)


def orbit_camera(azimuth_deg: float, size: int) -> Camera:
    """Camera on the orbit circle; azimuth 0 is the frontal view, +90 looks at the head's left side."""
    position = (CAMERA_DISTANCE * camera_direction(azimuth_deg) + [0.0, CAMERA_HEIGHT, 0.0]).astype(np.float32)
    forward = CAMERA_TARGET - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0], dtype=np.float32))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    focal = 0.5 * size / np.tan(np.deg2rad(FIELD_OF_VIEW_DEG) / 2)
    return Camera(position, right, up, forward, float(focal), size)


def _ray_directions(camera: Camera) -> np.ndarray:
    """Unit world-space ray direction through every pixel centre, (h*w, 3)."""
    n = camera.size
    coords = (np.arange(n, dtype=np.float32) + 0.5 - n / 2) / camera.focal
    xs, ys = np.meshgrid(coords, -coords)  # (n, n): image y grows downwards
    dirs = xs[..., None] * camera.right + ys[..., None] * camera.up + camera.forward  # (n, n, 3)
    dirs = dirs.reshape(-1, 3)
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def intersect(prim: Ellipsoid, origin: np.ndarray, dirs: np.ndarray):
    """First valid hit of rays with one ellipsoid: (t, unit-sphere point, world normal).

    Rays that miss get t = inf. Solved in the frame where the ellipsoid is the unit
    sphere: |o' + t d'|^2 = 1 with o' = R^T (o - c) / r and d' = R^T d / r.
    """
    o = (prim.rot.T @ (origin - prim.center)) / prim.radii  # (3,)
    d = (dirs @ prim.rot) / prim.radii  # (n, 3); row-vector form of R^T d
    a = np.einsum("ij,ij->i", d, d)
    b = 2.0 * (d @ o)
    c = float(o @ o) - 1.0
    disc = b * b - 4 * a * c
    hit = disc > 0
    sq = np.sqrt(np.where(hit, disc, 0.0))
    t = np.full(len(dirs), np.inf, dtype=np.float32)
    p = np.zeros_like(d)
    back = np.zeros(len(dirs), dtype=bool)
    for sign in (-1.0, 1.0):  # near root first, the far one only where the near is clipped
        ts = (-b + sign * sq) / (2 * a)
        ps = o + ts[:, None] * d
        ok = hit & (ts > 1e-4) & np.isinf(t)
        if prim.clip is not None:
            normal, offset = prim.clip
            ok &= ps @ np.asarray(normal, dtype=np.float32) >= offset
        t = np.where(ok, ts, t)
        p = np.where(ok[:, None], ps, p)
        back |= ok & (sign > 0)
    # Gradient of the implicit surface, mapped to the world: R (p / r).
    normal = (p / prim.radii) @ prim.rot.T
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    normal[back] *= -1.0  # inside of an open shell faces the viewer
    return t, p, normal


def _screen_box(prim: Ellipsoid, camera: Camera) -> tuple[int, int, int, int] | None:
    """Pixel rows/cols that the primitive's bounding sphere can cover (None: all of them)."""
    radius = float(prim.radii.max())
    x, y, depth = camera.project(prim.center)
    if depth - radius <= 1e-3:
        return None  # the sphere reaches behind the camera: no safe box
    # The sphere's silhouette is within atan(r / sqrt(d^2 - r^2)) of its centre's ray;
    # the tangent grows away from the image centre, so pad by the off-axis factor.
    off_axis = 1.0 + (abs(x - camera.size / 2) + abs(y - camera.size / 2)) / camera.focal
    reach = camera.focal * radius / np.sqrt(max(depth**2 - radius**2, 1e-6)) * off_axis + 2
    x0, x1 = int(np.floor(x - reach)), int(np.ceil(x + reach))
    y0, y1 = int(np.floor(y - reach)), int(np.ceil(y + reach))
    n = camera.size
    if x1 < 0 or y1 < 0 or x0 >= n or y0 >= n:
        return (0, 0, 0, 0)
    return max(y0, 0), min(y1 + 1, n), max(x0, 0), min(x1 + 1, n)


def trace(prims: list[Ellipsoid], origin: np.ndarray, dirs: np.ndarray, camera: Camera | None = None):
    """Nearest primitive per ray: (primitive index or -1, t, unit point, normal, world point).

    With ``camera`` (``dirs`` then being its full pixel grid), each primitive is
    only tested against the pixels its bounding sphere can cover: most parts of a
    head are small on screen, so this is several times faster than testing all.
    """
    n = len(dirs)
    best_t = np.full(n, np.inf, dtype=np.float32)
    best_i = np.full(n, -1, dtype=np.int32)
    best_p = np.zeros((n, 3), dtype=np.float32)
    best_n = np.zeros((n, 3), dtype=np.float32)
    grid = np.arange(n).reshape(camera.size, camera.size) if camera is not None else None
    for i, prim in enumerate(prims):
        box = _screen_box(prim, camera) if camera is not None else None
        rays = grid[box[0]:box[1], box[2]:box[3]].ravel() if box is not None else slice(None)
        t, p, nrm = intersect(prim, origin, dirs[rays])
        closer = t < best_t[rays]
        sel = np.arange(n)[rays][closer]
        best_t[sel] = t[closer]
        best_i[sel] = i
        best_p[sel] = p[closer]
        best_n[sel] = nrm[closer]
    world = origin + np.where(np.isinf(best_t), 0.0, best_t)[:, None] * dirs
    return best_i, best_t, best_p, best_n, world.astype(np.float32)


def is_visible(prims: list[Ellipsoid], camera: Camera, point: np.ndarray, tolerance: float = 0.03) -> bool:
    """Whether a surface point is the first thing the camera's ray towards it hits."""
    rel = np.asarray(point, dtype=np.float32) - camera.position
    dist = float(np.linalg.norm(rel))
    _, t, _, _, _ = trace(prims, camera.position, (rel / dist)[None, :])
    x, y, _ = camera.project(point)
    inside = -0.5 <= x <= camera.size - 0.5 and -0.5 <= y <= camera.size - 0.5
    return inside and bool(t[0] >= dist - tolerance)


def _noise3(p: np.ndarray, freq: float, seed: float) -> np.ndarray:
    """Cheap smooth pseudo-noise in [-1, 1] from products of sines (fixed to the head surface)."""
    x, y, z = p[:, 0] * freq, p[:, 1] * freq, p[:, 2] * freq
    return (
        np.sin(x + 1.7 * seed) * np.sin(1.3 * y + seed) * np.sin(0.9 * z + 2.1 * seed)
        + 0.5 * np.sin(2.3 * x + 1.9 * y + seed) * np.sin(2.1 * z - 1.3 * x + 0.7 * seed)
    ) / 1.5


def _albedo(prim: Ellipsoid, unit: np.ndarray, world: np.ndarray, detail: float) -> np.ndarray:
    """Surface colour (n, 3) in [0, 1] before lighting. ``detail`` scales fine texture."""
    base = np.asarray(prim.params.get("color", (0.7, 0.7, 0.7)), dtype=np.float32)
    mat = prim.material
    if mat == "skin":
        # Low-frequency blotches plus pores: the pores are the high-frequency
        # texture that a generator's blur removes (and a sharpness statistic sees).
        tint = 1.0 + 0.05 * _noise3(world, 3.0, 1.0) + detail * 0.07 * _noise3(world, 55.0, 2.0)
        col = base * tint[:, None]
    elif mat == "hair":
        # Strands: stripes across the azimuth of the head, slightly wavy.
        ang = np.arctan2(world[:, 0], world[:, 2] + 0.3)
        stripes = np.sin(70.0 * ang + 6.0 * world[:, 1]) * np.sin(23.0 * ang)
        col = base * (1.0 + detail * 0.28 * stripes)[:, None]
        patches = prim.params.get("patch_strength", 0.0)
        if patches:  # hair distortion: discoloured clumps
            blot = np.clip(_noise3(world, 9.0, prim.params.get("patch_seed", 3.0)) * 2.0 - 0.3, 0, 1)
            odd = np.asarray(prim.params.get("patch_color", (0.9, 0.3, 0.8)), dtype=np.float32)
            col = col * (1 - patches * blot)[:, None] + odd * (patches * blot)[:, None]
    elif mat == "eye":
        # Unit-sphere z points out of the eyeball: sclera, iris ring, pupil.
        iris = np.asarray(prim.params.get("iris", (0.25, 0.35, 0.5)), dtype=np.float32)
        col = np.tile(np.array([0.93, 0.92, 0.9], dtype=np.float32), (len(unit), 1))
        in_iris = unit[:, 2] > prim.params.get("iris_cos", 0.80)
        col[in_iris] = iris * (1.0 + 0.15 * np.sin(40 * np.arctan2(unit[in_iris, 1], unit[in_iris, 0])))[:, None]
        col[unit[:, 2] > prim.params.get("pupil_cos", 0.95)] = 0.05
    elif mat == "lips":
        col = np.tile(base, (len(unit), 1))
        # The mouth line: a dark slit across the middle of the lips.
        slit = np.abs(unit[:, 1]) < prim.params.get("slit", 0.12)
        col[slit] = (0.12, 0.05, 0.05)
        smear = prim.params.get("smear", 0.0)
        if smear:  # mouth distortion: teeth-like smears across the lips
            teeth = np.clip(_noise3(unit, 14.0, 5.0) * 3.0, 0, 1) * smear
            col = col * (1 - teeth)[:, None] + 0.95 * teeth[:, None]
    elif mat == "cloth":
        weave = 1.0 + detail * 0.06 * np.sin(80 * world[:, 0]) * np.sin(80 * world[:, 1])
        col = base * weave[:, None]
        glitch = prim.params.get("glitch", 0.0)
        if glitch:  # accessories/cloth distortion: jagged colour blocks
            blocks = np.sign(np.sin(25 * world[:, 0]) * np.sin(31 * world[:, 1]) * np.sin(17 * world[:, 2]))
            col = col * (1 + glitch * 0.8 * blocks)[:, None]
    elif mat == "metal":
        col = np.tile(base, (len(unit), 1))
    else:
        raise ValueError(f"unknown material {mat!r} on primitive {prim.tag!r}")
    return np.clip(col, 0.0, 1.0)


def _apply_seam(col: np.ndarray, world: np.ndarray, seam: dict) -> np.ndarray:
    """Overlap/blending distortion: a plane where two textures meet badly."""
    n = np.asarray(seam["normal"], dtype=np.float32)
    side = (world - np.asarray(seam["point"], dtype=np.float32)) @ n
    shift = np.asarray(seam["shift"], dtype=np.float32)
    col = np.where((side > 0)[:, None], np.clip(col * shift, 0, 1), col)
    band = np.abs(side) < seam["width"]
    col[band] = col[band] * 0.35 + np.asarray(seam["band_color"], dtype=np.float32) * 0.65
    return col


def render_view(
    prims: list[Ellipsoid],
    azimuth_deg: float,
    size: int,
    detail: float = 1.0,
    seam: dict | None = None,
    skin_materials: tuple[str, ...] = ("skin", "hair"),
) -> np.ndarray:
    """Render one frame as float32 RGB (size, size, 3) in [0, 1]."""
    cam = orbit_camera(azimuth_deg, size)
    dirs = _ray_directions(cam)
    idx, _, unit, normal, world = trace(prims, cam.position, dirs, cam)
    # Background: a vertical studio gradient.
    rows = np.repeat(np.linspace(0, 1, size, dtype=np.float32), size)
    img = BACKGROUND_TOP * (1 - rows[:, None]) + BACKGROUND_BOTTOM * rows[:, None]
    view = -dirs
    for i, prim in enumerate(prims):
        sel = idx == i
        if not sel.any():
            continue
        col = _albedo(prim, unit[sel], world[sel], detail)
        if seam is not None and prim.material in skin_materials:
            col = _apply_seam(col, world[sel], seam)
        nrm = normal[sel]
        light = np.full(len(nrm), AMBIENT, dtype=np.float32)
        spec = np.zeros(len(nrm), dtype=np.float32)
        shininess = {"eye": 60.0, "metal": 25.0, "lips": 20.0}.get(prim.material, 0.0)
        for direction, strength in LIGHTS:
            ldir = direction / np.linalg.norm(direction)
            light += strength * np.clip(nrm @ ldir, 0, None)
            if shininess:
                half = ldir + view[sel]
                half /= np.linalg.norm(half, axis=1, keepdims=True)
                spec += 0.5 * strength * np.clip(np.einsum("ij,ij->i", nrm, half), 0, None) ** shininess
        img[sel] = col * light[:, None] + spec[:, None]
    return np.clip(img, 0.0, 1.0).reshape(size, size, 3)
