"""3D head assets (.glb / .gltf / .obj with .mtl / .ply) -> one checked triangle mesh in the render frame.

Loaded with trimesh (Mitsuba's own .obj reader ignores .mtl files): positions, triangles, vertex
normals, and the surface colour as a base-colour texture with its UVs, as vertex colours, or as one
material colour. The mesh is turned so that ``up`` points along +y and the face (``front``) along
+z, centred on its bounding box and scaled to a bounding sphere of radius 1, so every asset is
framed alike. Colours come out linear (sRGB decoded), textures as float arrays, UVs with v flipped
for Mitsuba's image origin.

Bad input is an ``AssetError`` naming the file: unreadable, no triangles, non-finite vertices, a
3D Gaussian-splat .ply (no renderer for those here). A texture an .mtl names that is missing is not
an error: the mesh renders untextured, and ``notes`` says so (the row of `lmmeval score` carries it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}
UP = {"y": "+y", "z": "+z"}
# A 3D Gaussian-splat .ply stores per-point spherical-harmonic colour, opacity, scale and rotation.
SPLAT_PROPERTIES = ("f_dc_0", "opacity", "scale_0", "rot_0")


class AssetError(ValueError):
    """An asset that cannot be rendered; the message names the file."""


@dataclass
class HeadMesh:
    source: str
    vertices: np.ndarray  # (n, 3) float32, render frame: y up, face towards +z, bounding sphere of radius 1
    faces: np.ndarray  # (m, 3) uint32
    normals: np.ndarray  # (n, 3) float32, unit
    uvs: np.ndarray | None = None  # (n, 2) float32, v flipped for Mitsuba; with ``texture``
    texture: np.ndarray | None = None  # (h, w, 3) float32, linear
    colors: np.ndarray | None = None  # (n, 3) float32, linear vertex colours
    base_color: tuple[float, float, float] = (0.6, 0.6, 0.6)  # linear; when there is neither of the two
    notes: list[str] = field(default_factory=list)


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (the sRGB transfer function)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def orientation(up: str, front: str) -> np.ndarray:
    """The rotation (3, 3) taking the asset's ``up`` axis to +y and its ``front`` axis to +z."""
    if up not in UP:
        raise ValueError(f"up must be one of {sorted(UP)}, got {up!r}")
    if front not in AXES:
        raise ValueError(f"front must be one of {sorted(AXES)}, got {front!r}")
    u, f = np.array(AXES[UP[up]], float), np.array(AXES[front], float)
    if abs(u @ f) > 0:
        raise ValueError(f"front {front} is along the up axis {up}: the face must look sideways")
    return np.stack([np.cross(u, f), u, f])  # rows: where x, y, z of the render frame come from


def load_asset(path: str | Path, up: str = "y", front: str = "+z") -> HeadMesh:
    """Read, check and orient one asset (see the module docstring)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise AssetError(f"{path}: no such asset file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise AssetError(f"{path}: not a mesh file ({', '.join(MESH_SUFFIXES)})")
    if path.suffix.lower() == ".ply":
        _refuse_splats(path)
    notes = _missing_textures(path) if path.suffix.lower() == ".obj" else []
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many error types for broken input
        raise AssetError(f"{path}: cannot read the mesh ({type(err).__name__}: {str(err).splitlines()[0][:200]})") \
            from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise AssetError(f"{path}: the file holds no triangles")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise AssetError(f"{path}: {bad} vertices have non-finite coordinates")
    rotation = orientation(up, front)
    vertices = vertices @ rotation.T
    lo, hi = vertices.min(0), vertices.max(0)
    vertices -= (lo + hi) / 2  # centred on its bounding box
    radius = np.linalg.norm(vertices, axis=1).max()
    if not radius > 0:
        raise AssetError(f"{path}: all vertices coincide")
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64) @ rotation.T
    head = HeadMesh(source=str(path), vertices=(vertices / radius).astype(np.float32),
                    faces=np.asarray(mesh.faces, dtype=np.uint32), normals=normals.astype(np.float32), notes=notes)
    _colour(head, mesh)
    return head


def _colour(head: HeadMesh, mesh) -> None:
    """The mesh's surface colour: its base-colour texture, its vertex colours, or its material colour."""
    visual = mesh.visual
    if visual.kind == "texture":
        material = getattr(visual, "material", None)
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        factor = getattr(material, "baseColorFactor", None)
        if factor is None:
            factor = getattr(material, "diffuse", None)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(head.vertices):
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            head.texture = srgb_to_linear(rgb)
            head.uvs = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]).astype(np.float32)  # Mitsuba's image origin
            return
        if factor is not None:
            head.base_color = tuple(srgb_to_linear(np.asarray(factor[:3], np.float32) / 255.0).tolist())
        return
    if visual.kind in ("vertex", "face"):
        colors = np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0  # face colours spread to vertices
        head.colors = srgb_to_linear(colors)


def _refuse_splats(path: Path) -> None:
    with open(path, "rb") as f:
        header = f.read(8192)
    end = header.find(b"end_header")
    text = header[: end if end >= 0 else len(header)].decode("latin-1")
    if all(re.search(rf"property\s+\w+\s+{name}\b", text) for name in SPLAT_PROPERTIES):
        raise AssetError(f"{path}: a 3D Gaussian-splat .ply: not supported (no renderer for splats runs here; "
                         "export the head as a mesh)")


def _missing_textures(obj: Path) -> list[str]:
    """Notes for textures (map_Kd) that the .obj's .mtl files name but that do not exist."""
    notes = []
    text = obj.read_text(errors="replace")
    for mtl_name in re.findall(r"^\s*mtllib\s+(.+?)\s*$", text, flags=re.M):
        mtl = obj.parent / mtl_name
        if not mtl.is_file():
            notes.append(f"material file {mtl_name} is missing: rendered untextured")
            continue
        for texture in re.findall(r"^\s*map_Kd\s+(?:-\S+\s+\S+\s+)*(.+?)\s*$", mtl.read_text(errors="replace"),
                                  flags=re.M):
            if not (mtl.parent / texture).is_file():
                notes.append(f"texture {texture} named in {mtl_name} is missing: rendered untextured")
    return notes
