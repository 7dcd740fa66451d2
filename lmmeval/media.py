"""Reading and writing videos and images: the one place that touches codecs.

Decoding uses decord (fast random access, what qwen-vl-utils uses too); encoding
uses PyAV's libx264, which ships inside the ``av`` wheel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def write_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """Write uint8 RGB frames (T, H, W, 3) as an H.264 mp4 (yuv420p, so every player opens it)."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 with yuv420p needs even height and width, got {h}x{w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)
    return path


def video_info(path: str | Path) -> dict:
    """Frame count, fps, height and width of a video file (errors name the file)."""
    reader = _open_video(path)
    h, w, _ = reader[0].shape
    return {"num_frames": len(reader), "fps": float(reader.get_avg_fps()), "height": h, "width": w}


def read_video(path: str | Path, indices: list[int] | None = None) -> tuple[np.ndarray, float]:
    """Decode a video to uint8 RGB (T, H, W, 3) and its average fps; ``indices`` picks frames."""
    reader = _open_video(path)
    if indices is None:
        indices = list(range(len(reader)))
    bad = [i for i in indices if not 0 <= i < len(reader)]
    if bad:
        raise ValueError(f"{path}: frame indices {bad[:5]} outside 0..{len(reader) - 1}")
    return reader.get_batch(indices).asnumpy(), float(reader.get_avg_fps())


def _open_video(path: str | Path):
    import decord

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as err:  # decord raises its own DECORDError for undecodable input
        raise ValueError(f"{path}: cannot decode video ({type(err).__name__}: {err})") from None
    if len(reader) == 0:
        raise ValueError(f"{path}: video has no frames")
    return reader
