"""3D head assets (.glb / .gltf / .obj with .mtl / .ply) -> one checked triangle mesh in the render frame.

Loaded with trimesh (Mitsuba's own .obj reader ignores .mtl files): positions, triangles, vertex
normals, and the surface colour as a base-colour texture with its UVs, as vertex colours, or as one
material colour. The mesh is turned so that ``up`` points along +y and the face (``front``) along
+z, centred on its bounding box and scaled to a bounding sphere of radius 1, so every asset is
framed alike. Colours come out linear (sRGB decoded through a 256-entry table: float32, never a
float64 copy of a texture), textures as float arrays, UVs with v flipped for Mitsuba's image origin.

Textures are capped at ``MAX_TEXTURE_SIDE`` pixels a side before they are converted: a frame of the
protocol (512 px, the head filling most of it) shows no more texels than that, while an 8k x 8k
texture as float32 would take 768 MB in every render worker. A downscaled texture is noted in the
head's ``notes``. The cap is applied to the textures of the file's meshes before they are merged
into one (merging copies them). Only the base colour is rendered; other maps are dropped on load.

``referenced_files`` lists the files a mesh file names (material libraries, textures, glTF buffers):
the render cache keys on them, and folder scoring does not take them for inputs.

Bad input is an ``AssetError`` naming the file: unreadable, no triangles, non-finite vertices, a
3D Gaussian-splat .ply (no renderer for those here). A texture an .mtl names that is missing is not
an error: the mesh renders untextured, and ``notes`` says so (the row of `lmmeval score` carries it).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}
UP = {"y": "+y", "z": "+z"}
# A 3D Gaussian-splat .ply stores per-point spherical-harmonic colour, opacity, scale and rotation.
SPLAT_PROPERTIES = ("f_dc_0", "opacity", "scale_0", "rot_0")
MAX_TEXTURE_SIDE = 2048  # pixels; see the module docstring
# The glTF material maps other than the base colour: never rendered, so not carried along.
UNUSED_PBR_MAPS = ("normalTexture", "emissiveTexture", "occlusionTexture", "metallicRoughnessTexture")
# .mtl statements that name a file (the texture maps, bump and displacement maps, reflection maps).
MTL_FILE_STATEMENT = re.compile(r"^\s*(map_\w+|bump|disp|decal|refl|norm)\s+(.+?)\s*$", flags=re.M)


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
    """sRGB-encoded values in [0, 1] -> linear float32 (the sRGB transfer function); for a few values
    (colours, the table below), not images: see ``srgb8_to_linear``."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


SRGB8_TO_LINEAR = srgb_to_linear(np.arange(256) / 255.0)  # (256,) float32


def srgb8_to_linear(values: np.ndarray) -> np.ndarray:
    """uint8 sRGB values -> linear float32, through a 256-entry table: the result is the only array
    made (4 bytes a value), where the formula would make several float64 temporaries."""
    values = np.asarray(values)
    if values.dtype != np.uint8:
        raise ValueError(f"expected uint8 values, got {values.dtype}")
    return SRGB8_TO_LINEAR[values]


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
        scene = trimesh.load_scene(path, process=False)  # textures are opened here, not yet decoded
        _cap_textures(scene, notes)
        mesh = scene.to_mesh()  # one mesh: copies each part, its (by now capped) textures with it
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
            image = _capped(image, head.notes)  # parts merged into one may have packed their textures larger
            head.texture = srgb8_to_linear(np.asarray(image.convert("RGB")))
            head.uvs = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]).astype(np.float32)  # Mitsuba's image origin
            return
        if factor is not None:
            head.base_color = tuple(srgb_to_linear(np.asarray(factor[:3], np.float32) / 255.0).tolist())
        return
    if visual.kind in ("vertex", "face"):
        colors = np.asarray(visual.vertex_colors, dtype=np.uint8)[:, :3]  # face colours spread to vertices
        head.colors = srgb8_to_linear(np.ascontiguousarray(colors))


def _cap_textures(scene, notes: list[str]) -> None:
    """Downscale, in place, every base-colour texture of ``scene``'s meshes that is larger than
    ``MAX_TEXTURE_SIDE`` (noted), and drop the maps that are never rendered."""
    capped: dict[int, object] = {}  # one image shared by several parts is downscaled once
    for geometry in scene.geometry.values():
        material = getattr(getattr(geometry, "visual", None), "material", None)
        if material is None:
            continue
        for unused in UNUSED_PBR_MAPS:
            if getattr(material, unused, None) is not None:
                setattr(material, unused, None)
        attribute = "baseColorTexture" if getattr(material, "baseColorTexture", None) is not None else "image"
        image = getattr(material, attribute, None)
        if image is None or not hasattr(image, "size"):
            continue
        if id(image) not in capped:
            capped[id(image)] = _capped(image, notes)
        setattr(material, attribute, capped[id(image)])


def _capped(image, notes: list[str]):
    """``image`` (PIL), no side longer than ``MAX_TEXTURE_SIDE``: downscaled keeping its aspect."""
    from PIL import Image

    width, height = image.size
    if max(width, height) <= MAX_TEXTURE_SIDE:
        return image
    scale = MAX_TEXTURE_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image.draft("RGB", size)  # a JPEG is decoded at a fraction of its size; other formats in full
    if image.mode not in ("L", "RGB", "RGBA"):  # palette and other modes: only these resample well
        image = image.convert("RGB")
    # reducing_gap: a fast integer box reduction first, then Lanczos over the last factor of 3.
    small = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    notes.append(f"texture {width}x{height} downscaled to {size[0]}x{size[1]} "
                 f"(textures are capped at {MAX_TEXTURE_SIDE} px a side)")
    return small


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


def referenced_files(asset: str | Path) -> list[Path]:
    """The files that the mesh file ``asset`` names and that exist, resolved, each once, in the order
    named: an .obj's material libraries (.mtl) and every map they name (map_Kd, bump, ...); a .gltf's
    or .glb's external buffers and images (embedded data: URIs are not files); a .ply's texture
    (``comment TextureFile``, as trimesh reads it). A file that cannot be read names nothing."""
    path = Path(asset)
    suffix = path.suffix.lower()
    try:
        if suffix == ".obj":
            found = _obj_references(path)
        elif suffix in (".gltf", ".glb"):
            found = _gltf_references(path)
        elif suffix == ".ply":
            found = _ply_references(path)
        else:
            found = []
    except (OSError, ValueError, UnicodeDecodeError):  # unreadable or broken: load_asset names the fault
        found = []
    return list(dict.fromkeys(f.resolve() for f in found))


def _named_file(text: str, folders: list[Path]) -> Path | None:
    """The existing file that the end of ``text`` names, looked for in ``folders``: the longest run of
    its last words (names may hold spaces; options such as ``-s 1 1 1`` come first)."""
    words = text.split()
    for start in range(len(words)):
        name = " ".join(words[start:])
        for candidate in (name, name.replace("\\", "/")):
            for folder in folders:
                if (folder / candidate).is_file():
                    return folder / candidate
    return None


def _obj_references(obj: Path) -> list[Path]:
    found = []
    for line in re.findall(r"^\s*mtllib\s+(.+?)\s*$", obj.read_text(errors="replace"), flags=re.M):
        # One library whose name has spaces, or several separated by spaces.
        libraries = [obj.parent / line] if (obj.parent / line).is_file() else \
            [obj.parent / name for name in line.split() if (obj.parent / name).is_file()]
        for mtl in libraries:
            found.append(mtl)
            for _, rest in MTL_FILE_STATEMENT.findall(mtl.read_text(errors="replace")):
                texture = _named_file(rest, [mtl.parent, obj.parent])
                if texture is not None:
                    found.append(texture)
    return found


def _gltf_references(path: Path) -> list[Path]:
    if path.suffix.lower() == ".glb":
        with open(path, "rb") as f:
            magic, _, _ = struct.unpack("<4sII", f.read(12))
            length, kind = struct.unpack("<I4s", f.read(8))
            if magic != b"glTF" or kind != b"JSON":
                return []
            document = json.loads(f.read(length))
    else:
        document = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for entry in [*document.get("buffers", []), *document.get("images", [])]:
        uri = entry.get("uri") if isinstance(entry, dict) else None
        if isinstance(uri, str) and not uri.startswith("data:"):
            file = path.parent / unquote(uri)
            if file.is_file():
                found.append(file)
    return found


def _ply_references(path: Path) -> list[Path]:
    with open(path, "rb") as f:
        header = f.read(65536)
    end = header.find(b"end_header")
    text = header[: end if end >= 0 else len(header)].decode("latin-1")
    return [path.parent / name for name in re.findall(r"^comment\s+TextureFile\s+(.+?)\s*$", text, flags=re.M)
            if (path.parent / name).is_file()]
