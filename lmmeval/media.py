"""Reading and writing videos and images: the one place that touches codecs.

Decoding uses decord (fast random access, what qwen-vl-utils uses too); encoding
uses PyAV's libx264, which ships inside the ``av`` wheel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


# ---------------------------------------------------------------------------------------
# Model inputs: any supported input -> sampled, resized uint8 frames
# ---------------------------------------------------------------------------------------

@dataclass
class Visual:
    """One assessor input after frame sampling and resizing.

    ``frames`` is uint8 (T, h, w, 3) with T even (Qwen2.5-VL's temporal patch spans
    two frames) and h, w multiples of 28 within the pixel budget. An image becomes a
    two-frame still video, exactly how Qwen2-VL's processor encodes an image, so
    images and videos share one code path (and a batch never mixes modalities).
    """

    frames: np.ndarray
    original_size: tuple[int, int]  # (height, width) before resizing
    is_image: bool
    frame_indices: list[int]  # source frame of each sampled frame
    fps: float  # effective fps of the sampled frames
    source: str  # path, or a description of an in-memory input
    notes: list[str] = field(default_factory=list)  # what sampling changed, for reports


def sample_indices(num_frames: int, src_fps: float, fps: float, min_frames: int, max_frames: int) -> list[int]:
    """Uniform frame indices at ``fps`` (an even count within [min_frames, max_frames])."""
    duration = num_frames / src_fps if src_fps > 0 else num_frames
    n = int(round(duration * fps))
    n = max(min_frames, min(max_frames, n))
    n -= n % 2
    return np.linspace(0, num_frames - 1, n).round().astype(int).tolist()


def load_visual(item, sampling) -> Visual:
    """Path (video or image), PIL image, or array -> ``Visual`` (errors name the input)."""
    from PIL import Image

    if isinstance(item, (str, Path)):
        path = Path(item)
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return _from_image(_open_image(path), str(path), sampling)
        if suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of "
                             f"{VIDEO_SUFFIXES + IMAGE_SUFFIXES}")
        reader = _open_video(path)
        src_fps = float(reader.get_avg_fps()) or 1.0
        indices = sample_indices(len(reader), src_fps, sampling.fps, sampling.min_frames, sampling.max_frames)
        frames = reader.get_batch(indices).asnumpy()
        notes = []
        if len(reader) / src_fps * sampling.fps > sampling.max_frames:
            notes.append(f"frame cap: {len(reader)} frames sampled to {len(indices)}")
        return _finish(frames, str(path), False, indices, src_fps * (len(indices) / max(len(reader), 1)), sampling, notes)
    if isinstance(item, Image.Image):
        return _from_image(item, "<PIL image>", sampling)
    if isinstance(item, np.ndarray):
        return _from_array(item, sampling)
    raise ValueError(f"unsupported input type {type(item).__name__}; expected a path, a PIL image, "
                     "or a uint8 array (H, W, 3) / (T, H, W, 3)")


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from None
    return img


def _from_image(img, source: str, sampling) -> Visual:
    arr = np.asarray(img.convert("RGB"))  # grey, RGBA, CMYK, palette -> RGB
    return _finish(np.stack([arr, arr]), source, True, [0, 0], 1.0, sampling, [])


def _from_array(arr: np.ndarray, sampling) -> Visual:
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"array input must be (H, W, 3) or (T, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"array input must be uint8 in [0, 255] or float in [0, 1], got {arr.dtype}")
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError("float array input must be finite and in [0, 1]")
        arr = (arr * 255 + 0.5).astype(np.uint8)
    is_image = arr.shape[0] == 1
    if is_image:
        return _finish(np.concatenate([arr, arr]), "<array>", True, [0, 0], 1.0, sampling, [])
    # In-memory videos carry no frame rate: every frame is used (up to the cap), and
    # the sampled frames are taken to be ``sampling.fps`` apart.
    t = arr.shape[0]
    indices = np.linspace(0, t - 1, max(2, min(sampling.max_frames, t) // 2 * 2)).round().astype(int).tolist()
    notes = [f"frame cap: {t} frames sampled to {len(indices)}"] if t > sampling.max_frames else []
    return _finish(arr[indices], "<array>", False, indices, sampling.fps, sampling, notes)


def _finish(frames: np.ndarray, source: str, is_image: bool, indices: list[int], fps: float, sampling, notes) -> Visual:
    from PIL import Image
    from qwen_vl_utils import smart_resize

    t, h, w, _ = frames.shape
    if h < 4 or w < 4:
        raise ValueError(f"{source}: frames of {w}x{h} pixels are too small to assess")
    nh, nw = smart_resize(h, w, factor=28, min_pixels=sampling.min_pixels, max_pixels=sampling.max_pixels)
    if (nh, nw) != (h, w):
        frames = np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in frames])
        if h * w > sampling.max_pixels:
            notes = notes + [f"downscaled {w}x{h} -> {nw}x{nh} (max_pixels {sampling.max_pixels})"]
    if t % 2:  # an odd count: repeat the last frame to fill the temporal patch
        frames = np.concatenate([frames, frames[-1:]])
        indices = indices + indices[-1:]
    return Visual(frames, (h, w), is_image, indices, fps, source, notes)
