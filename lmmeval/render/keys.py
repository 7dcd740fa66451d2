"""A render's content key: what makes its pixels, so a cache of rendered videos is never stale.

``render_key(asset, config, variant)`` is a SHA-256 hex digest over the renderer's version
(``scene.RENDERER_VERSION``), the family of the Mitsuba variant that renders (``scene.variant_family``:
scalar, LLVM and CUDA frames differ slightly), every setting of ``RenderConfig`` that changes the pixels
(``PIXEL_SETTINGS``), the asset's bytes and suffix, and the bytes and names (relative to the
asset's folder) of the files it references (``assets.referenced_files``: an .obj's .mtl and
texture maps, a glTF's buffers and images). A referenced file that appears or disappears changes
the key too. ``workers`` and ``gpu`` are left out: they choose where the frames are rendered, not
what is rendered. Moving the asset's folder as a whole keeps the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .assets import referenced_files
from .scene import RENDERER_VERSION, variant_family

PIXEL_SETTINGS = ("size", "fps", "seconds", "orbit_deg", "spp", "up", "front")
_CHUNK = 1 << 20


def render_key(asset: str | Path, config, variant: str) -> str:
    """The hex digest that names ``asset`` rendered with ``config`` (a ``RenderConfig``) by Mitsuba's
    ``variant``; see the module docstring. Raises OSError for an asset that cannot be read."""
    asset = Path(asset)
    # 4 and 4.0 seconds render alike: numbers by value, not by how they were written.
    settings = {name: _value(getattr(config, name)) for name in PIXEL_SETTINGS}
    digest = hashlib.sha256()
    digest.update(json.dumps({"renderer": RENDERER_VERSION, "variant": variant_family(variant), **settings},
                             sort_keys=True).encode())
    _add_file(digest, f"asset{asset.suffix.lower()}", asset)
    folder = asset.resolve().parent
    for file in referenced_files(asset):
        _add_file(digest, Path(os.path.relpath(file, folder)).as_posix(), file)
    return digest.hexdigest()


def _value(setting):
    return float(setting) if isinstance(setting, (int, float)) and not isinstance(setting, bool) else setting


def _add_file(digest, name: str, path: Path) -> None:
    """The name and the bytes of one file, each length-prefixed so no two inputs run together."""
    encoded = name.encode()
    digest.update(len(encoded).to_bytes(8, "little") + encoded + path.stat().st_size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
