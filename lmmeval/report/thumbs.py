"""Small thumbnails of the scored inputs, written into the report so that the page is self-contained.

The picture of an input, in order of preference:

1. its -45/0/45 degree snapshots side by side, where a synthetic study has them
   (``snapshots/<id>_<view>.png`` beside the folder of the videos, `lmmeval synth`'s layout);
2. the ``<stem>_views.png`` that `lmmeval render` writes beside a video;
3. the first frame of its saliency overlay (``overlay`` of a row scored with ``--overlay``);
4. the middle frame of the video, or the image itself.

A thumbnail is a small JPEG (``HEIGHT`` pixels high): a 10,000-input page loads a few KB per
visible item. An input whose picture cannot be read gets none (the page shows a placeholder):
a report is not the place to fail on a broken video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..io.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

HEIGHT = 72
QUALITY = 80
VIEWS = ("-45", "0", "45")


def picture_sources(path: Path, overlay: str | None) -> tuple[str, list[Path]]:
    """(kind, files) of the picture of the input at ``path``: see the module's order."""
    stem = path.stem
    for folder in (path.parent.parent / "snapshots", path.parent / "snapshots"):
        views = [folder / f"{stem}_{v}.png" for v in VIEWS]
        if any(v.is_file() for v in views):
            return "views", [v for v in views if v.is_file()]
    rendered = path.parent / f"{stem}_views.png"
    if rendered.is_file():
        return "views", [rendered]
    if overlay and Path(overlay).is_file():
        return "overlay", [Path(overlay)]
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        return "input", [path]
    return "none", []


def _image(path: Path) -> Image.Image:
    """The first frame of an image or GIF, or the middle frame of a video, as RGB."""
    if path.suffix.lower() in IMAGE_SUFFIXES or path.suffix.lower() == ".gif":
        with Image.open(path) as img:
            img.seek(0)
            return img.convert("RGB")
    from ..io.media import read_video, video_info

    middle = video_info(path)["num_frames"] // 2
    frames, _ = read_video(path, [middle])
    return Image.fromarray(np.asarray(frames[0]))


def _scaled(img: Image.Image, height: int) -> Image.Image:
    width = max(1, round(img.width * height / img.height))
    img.thumbnail((width, height), Image.Resampling.LANCZOS)  # in place; keeps the aspect ratio
    return img


def make_thumbnail(files: list[Path], out: Path, height: int = HEIGHT) -> tuple[int, int] | None:
    """Write the pictures of ``files`` side by side, ``height`` pixels high, to ``out`` (JPEG);
    return its (width, height), or None when no picture could be read."""
    images = []
    for f in files:
        try:
            images.append(_scaled(_image(f), height))
        except Exception:  # noqa: BLE001 - any decoder error: the input gets no picture, the report goes on
            continue
    if not images:
        return None
    sheet = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "white")
    x = 0
    for img in images:
        sheet.paste(img, (x, 0))
        x += img.width
    sheet.save(out, "JPEG", quality=QUALITY, optimize=True)
    return sheet.size
