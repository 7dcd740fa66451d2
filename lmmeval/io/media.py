"""Reading and writing videos and images: the one place that touches codecs.

Decoding uses decord (fast random access, what qwen-vl-utils uses too); encoding
uses PyAV's libx264, which ships inside the ``av`` wheel.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..model.configuration import PatchGeometry, SamplingConfig

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES  # what the assessor reads


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
    return _get_batch(reader, Path(path), indices), float(reader.get_avg_fps())


def _get_batch(reader, path: Path, indices: list[int]) -> np.ndarray:
    """decord's frames at ``indices``; PyAV's where decord opens a file but cannot copy its frames out
    (seen for some small frame widths, e.g. 48 pixels: a row-stride mismatch inside decord)."""
    try:
        with tempfile.TemporaryFile() as native, _native_stderr_to(native):
            return reader.get_batch(indices).asnumpy()
    except Exception as err:  # decord's own DECORDError
        frames, _, _ = _decode_with_pyav(path, VideoDecodeError(path, f"{type(err).__name__}: {str(err)[:200]}"))
        return frames[indices]


class VideoDecodeError(ValueError):
    """A video file that exists but cannot be decoded; ``reason`` says what the decoder said."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: cannot decode video ({reason})")
        self.reason = reason


@contextlib.contextmanager
def _native_stderr_to(sink):
    """Point file descriptor 2 at ``sink`` (a file) while native code runs: decord and FFmpeg print
    "ERROR opening ..." lines for inputs that lmmeval then reports in its own words, once."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_video(path: str | Path):
    import decord

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own log lines
    with tempfile.TemporaryFile() as native:
        try:
            with _native_stderr_to(native):
                reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as err:  # decord raises its own DECORDError for undecodable input
            raise VideoDecodeError(path, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    if len(reader) == 0:
        raise ValueError(f"{path}: video has no frames")
    return reader


# ---------------------------------------------------------------------------------------
# Model inputs: any supported input -> sampled, resized uint8 frames
# ---------------------------------------------------------------------------------------

@dataclass
class Visual:
    """One assessor input after frame sampling and resizing.

    ``frames`` is uint8 (T, h, w, 3) with T a multiple of the temporal patch (two frames in
    Qwen2.5-VL) and h, w multiples of the patch geometry's factor within the pixel budget. An
    image becomes a still video of one temporal patch, exactly how Qwen2-VL's processor encodes
    an image, so images and videos share one code path (and a batch never mixes modalities).
    """

    frames: np.ndarray
    original_size: tuple[int, int]  # (height, width) before resizing
    is_image: bool
    frame_indices: list[int]  # source frame of each sampled frame
    fps: float  # effective fps of the sampled frames
    source: str  # path, or a description of an in-memory input
    notes: list[str] = field(default_factory=list)  # what sampling changed, for reports
    load_s: float = 0.0  # seconds spent decoding and resizing
    source_frames: np.ndarray | None = None  # the same frames before resizing (with keep_source=True)


def sample_count(duration: float, sampling: SamplingConfig, geometry: PatchGeometry) -> int:
    """Frames sampled from a clip lasting ``duration`` seconds (the first frame's start to the last
    frame's end, so n frames at f fps last n / f) at ``sampling.fps``: a count within
    [min_frames, max_frames], rounded down to whole temporal patches."""
    n = max(sampling.min_frames, min(sampling.max_frames, int(round(duration * sampling.fps))))
    return n - n % geometry.temporal_patch_size


def clip_duration(timestamps: np.ndarray) -> float:
    """Seconds from the first frame's start to the last frame's end: the last start plus the median
    frame interval (0 for a single frame)."""
    if len(timestamps) < 2:
        return 0.0
    return float(timestamps[-1] - timestamps[0] + np.median(np.diff(timestamps)))


def nearest_frames(timestamps: np.ndarray, times: np.ndarray) -> list[int]:
    """Index of the frame shown at each time (nearest start timestamp): variable frame rates
    are sampled uniformly in time, not in frame count."""
    return [int(np.abs(timestamps - t).argmin()) for t in times]


def load_visual(item, sampling: SamplingConfig, geometry: PatchGeometry, keep_source: bool = False) -> Visual:
    """Path (video or image), PIL image, or array -> ``Visual`` (errors name the input).

    ``sampling`` picks the frames and the pixel budget; ``geometry`` (the model's patches) the
    multiples the frames are resized to. ``keep_source`` also keeps the sampled frames at their
    own size (``Visual.source_frames``), e.g. for overlays.
    """
    from PIL import Image

    sample = _Sampler(sampling, geometry, keep_source)
    if isinstance(item, (str, Path)):
        path = Path(item)
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return _from_image(_open_image(path), str(path), sample)
        if suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {MEDIA_SUFFIXES}")
        frames, timestamps, indices, notes = _read_sampled_video(path, sampling, geometry)
        duration = float(timestamps[-1]) if len(timestamps) > 1 else 0.0
        fps = (len(indices) - 1) / duration if duration > 0 else sampling.fps
        return sample.finish(frames, str(path), False, indices, fps, notes)
    if isinstance(item, Image.Image):
        return _from_image(item, "<PIL image>", sample)
    if isinstance(item, np.ndarray):
        return _from_array(item, sample)
    raise ValueError(f"unsupported input type {type(item).__name__}; expected a path, a PIL image, "
                     "or a uint8 array (H, W, 3) / (T, H, W, 3)")


def _read_sampled_video(path: Path, sampling: SamplingConfig, geometry: PatchGeometry):
    """(frames (T, H, W, 3), all frame timestamps, sampled indices, notes) of a video file.

    decord first (fast random access); animated GIFs through Pillow; anything decord
    cannot open (e.g. AV1) through PyAV. Display rotation metadata is applied.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    notes = []
    if path.suffix.lower() == ".gif":
        frames, timestamps = _decode_gif(path)
    else:
        try:
            reader = _open_video(path)
            timestamps = reader.get_frame_timestamp(range(len(reader)))[:, 0].astype(np.float64)
            frames = None
        except VideoDecodeError as decord_error:
            frames, timestamps, rotation = _decode_with_pyav(path, decord_error)
            if rotation:
                notes.append(f"rotated {rotation} deg (display metadata)")
    duration = clip_duration(timestamps)
    # sample_count of them, uniform from the first frame's start to the last's.
    times = np.linspace(float(timestamps[0]), float(timestamps[-1]), sample_count(duration, sampling, geometry))
    indices = nearest_frames(timestamps, times)
    if int(round(duration * sampling.fps)) > sampling.max_frames:
        notes.append(f"frame cap: {len(timestamps)} frames ({duration:.1f} s) sampled to {len(indices)}")
    if len(timestamps) == 1:
        notes.append("single-frame video: assessed as a still")
    # decord applies display rotation metadata itself; the PyAV fallback does it below.
    frames = frames[indices] if frames is not None else _get_batch(reader, path, indices)
    return frames, timestamps, indices, notes


def _decode_gif(path: Path):
    from PIL import ImageSequence

    img = _open_image(path)
    frames, timestamps, t = [], [], 0.0
    for frame in ImageSequence.Iterator(img):
        frames.append(np.asarray(frame.convert("RGB")))
        timestamps.append(t)
        t += (frame.info.get("duration") or 100) / 1000.0  # ms; browsers show 0 as 100 ms
    return np.stack(frames), np.asarray(timestamps)


def _decode_with_pyav(path: Path, decord_error: VideoDecodeError):
    """Full decode with PyAV, the fallback for codecs decord lacks (e.g. AV1): (frames,
    timestamps, rotation). Display rotation is applied as decord would. Errors name the codec."""
    import av

    codec, frames, timestamps, rotation = "unknown", [], [], 0
    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                codec = stream.codec_context.name if stream.codec_context else "unknown"
                for frame in container.decode(stream):
                    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360 // 90 * 90
                    frames.append(np.rot90(frame.to_ndarray(format="rgb24"), k=rotation // 90))
                    timestamps.append(float(frame.time) if frame.time is not None else len(timestamps) / 25.0)
    except Exception as err:  # PyAV raises many error types for broken input
        raise VideoDecodeError(path, f"decord: {decord_error.reason}; PyAV: {type(err).__name__}: {err}") from None
    if not frames:
        raise VideoDecodeError(path, f"no video frame could be decoded (codec {codec!r})")
    return np.ascontiguousarray(np.stack(frames)), np.asarray(timestamps) - timestamps[0], rotation


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


def _from_image(img, source: str, sample: _Sampler) -> Visual:
    from PIL import ImageOps

    notes = []
    img = ImageOps.exif_transpose(img)  # camera orientation tag
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / integer / float grey: scale to 8 bits instead of letting PIL clip at 255.
        grey = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" and grey.max() <= 1.0 else (65535.0 if grey.max() > 255 else 255.0)
        grey = np.clip(grey / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        arr = np.stack([grey] * 3, axis=-1)
        notes.append(f"{img.mode} image scaled to 8 bits")
    else:
        arr = np.asarray(img.convert("RGB"))  # grey, RGBA (alpha dropped), CMYK, palette -> RGB
    return sample.still(arr, source, notes)


def _from_array(arr: np.ndarray, sample: _Sampler) -> Visual:
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"array input must be (H, W, 3) or (T, H, W, 3), got shape {arr.shape}")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"array input must be uint8 in [0, 255] or float in [0, 1], got {arr.dtype}")
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ValueError("float array input must be finite and in [0, 1]")
        arr = (arr * 255 + 0.5).astype(np.uint8)
    if arr.shape[0] == 1:
        return sample.still(arr[0], "<array>", [])
    # In-memory videos carry no frame rate: every frame is used (up to the cap), and
    # the sampled frames are taken to be ``sampling.fps`` apart. The count follows the file
    # rule (sample_count): within [min_frames, max_frames] and whole temporal patches, so a short
    # clip repeats frames rather than giving the model fewer than it was trained on.
    sampling = sample.sampling
    t = arr.shape[0]
    n = sample_count(t / sampling.fps, sampling, sample.geometry)  # t frames, sampling.fps apart
    indices = np.linspace(0, t - 1, n).round().astype(int).tolist()
    notes = [f"frame cap: {t} frames sampled to {len(indices)}"] if t > sampling.max_frames else []
    return sample.finish(arr[indices], "<array>", False, indices, sampling.fps, notes)


def frame_size(height: int, width: int, sampling: SamplingConfig, geometry: PatchGeometry) -> tuple[int, int]:
    """The (height, width) a frame is resized to: sides multiples of the geometry's factor (patch x
    merge), area within [min_pixels, max_pixels], aspect kept (qwen-vl-utils' rule)."""
    from qwen_vl_utils import smart_resize

    return smart_resize(height, width, factor=geometry.factor, min_pixels=sampling.min_pixels,
                        max_pixels=sampling.max_pixels)


def resize_frames(frames: np.ndarray, sampling: SamplingConfig, geometry: PatchGeometry) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 resized (bicubic) to ``frame_size``: what the model's vision tower
    reads. Frames already at that size are returned as they are."""
    from PIL import Image

    h, w = frames.shape[1:3]
    nh, nw = frame_size(h, w, sampling, geometry)
    if (nh, nw) == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in frames])


@dataclass
class _Sampler:
    """Sampled frames -> a ``Visual`` in the model's geometry."""

    sampling: SamplingConfig
    geometry: PatchGeometry
    keep_source: bool

    def still(self, frame: np.ndarray, source: str, notes: list[str]) -> Visual:
        """An image as a still video of one temporal patch, as Qwen2-VL's processor encodes images."""
        copies = self.geometry.temporal_patch_size
        return self.finish(np.stack([frame] * copies), source, True, [0] * copies, 1.0, notes)

    def finish(self, frames: np.ndarray, source: str, is_image: bool, indices: list[int], fps: float,
               notes: list[str]) -> Visual:
        t, h, w, _ = frames.shape
        if h < 4 or w < 4:
            raise ValueError(f"{source}: frames of {w}x{h} pixels are too small to assess")
        # Fill the last temporal patch by repeating the last frame.
        missing = -t % self.geometry.temporal_patch_size
        if missing:
            frames = np.concatenate([frames] + [frames[-1:]] * missing)
            indices = indices + indices[-1:] * missing
        source_frames = frames if self.keep_source else None
        frames = resize_frames(frames, self.sampling, self.geometry)
        nh, nw = frames.shape[1:3]
        if h * w > self.sampling.max_pixels:
            notes = notes + [f"downscaled {w}x{h} -> {nw}x{nh} (max_pixels {self.sampling.max_pixels})"]
        return Visual(frames, (h, w), is_image, indices, fps, source, notes, source_frames=source_frames)
