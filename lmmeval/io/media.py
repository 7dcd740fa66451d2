"""Reading and writing videos and images: the one place that touches codecs.

Decoding uses decord (fast random access, what qwen-vl-utils uses too), PyAV for what decord
cannot read, and Pillow for images and animated GIFs; encoding uses PyAV's libx264, which ships
inside the ``av`` wheel.

An input's decoding memory is bounded by what is sampled, not by what its header declares:
headers are checked against two limits before anything is decoded (``MAX_PIXELS`` per decoded
frame, ``MAX_VIDEO_FRAMES`` per video; the environment variables ``LMMEVAL_MAX_PIXELS`` and
``LMMEVAL_MAX_VIDEO_FRAMES`` override them), only the sampled frames of a video are kept, each
resized to the model's frame size as soon as it is decoded, and animated GIFs are streamed.
A decoder that crashes natively cannot be caught here: ``lmmeval.io.decode_pool`` runs these
functions in separate processes for that.

This module imports neither torch nor qwen-vl-utils (which imports torch): decode worker
processes start in well under a second.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from ..model.configuration import PatchGeometry, SamplingConfig

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES  # what the assessor reads

# Decoding limits. A frame costs about 4 bytes per pixel while Pillow or FFmpeg holds it (about 7 for
# 16-bit images), so 40 megapixels (an 8K UHD frame is 33) stay near 160 MB. Larger images are
# refused (JPEGs are decoded at 1/2, 1/4 or 1/8 scale instead, which libjpeg does for free); videos
# with larger frames are decoded downscaled. A header declaring more video frames than
# MAX_VIDEO_FRAMES (about 4.6 hours at 60 fps) is refused: decoders size their indexes by it.
MAX_PIXELS = 40_000_000
MAX_VIDEO_FRAMES = 1_000_000
PIXELS_ENV, FRAMES_ENV = "LMMEVAL_MAX_PIXELS", "LMMEVAL_MAX_VIDEO_FRAMES"
# Video frames decoded at once before they are resized: one full-HD frame is 2 megapixels.
_CHUNK_PIXELS = 16_000_000


def decode_limits() -> tuple[int, int]:
    """(pixels per decoded frame, frames per video) in force: ``LMMEVAL_MAX_PIXELS`` and
    ``LMMEVAL_MAX_VIDEO_FRAMES`` where set, else ``MAX_PIXELS`` and ``MAX_VIDEO_FRAMES``."""
    return _env_limit(PIXELS_ENV, MAX_PIXELS), _env_limit(FRAMES_ENV, MAX_VIDEO_FRAMES)


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(float(raw))  # 4e7 reads as 40000000
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be a positive number") from None
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r} must be a positive number")
    return value


class _Refused(ValueError):
    """An input refused by lmmeval's own checks (a limit, the frame size): passed on as it is where
    decoders' errors are wrapped (PyAV's own errors are ValueErrors too)."""


def _pixel_limit_error(path, width: int, height: int, limit: int) -> ValueError:
    return _Refused(f"{path}: {width}x{height} pixels ({width * height / 1e6:.1f} megapixels) is over the decoding "
                      f"limit of {limit:,} pixels per frame; set the environment variable {PIXELS_ENV} to a larger "
                      f"number to decode it (about 4 bytes of memory per pixel)")


def _frame_limit_error(path, frames: int, limit: int, what: str = "declares") -> ValueError:
    return _Refused(f"{path}: the video {what} {frames:,} frames, over the limit of {limit:,} frames per video "
                      f"(a damaged or crafted header can declare any count); set the environment variable "
                      f"{FRAMES_ENV} to a larger number to read it")


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
        reason = f"{type(err).__name__}: {str(err)[:200]}"
        frames = _pyav_frames(path, indices, reason, lambda frame: frame)
        return np.stack([frames[i] for i in indices])


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


def _check_file(path: Path, kind: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {kind} file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")


@dataclass(frozen=True)
class _Probe:
    """What a video container's header declares, read by PyAV without decoding a frame."""

    frames: int  # declared frame count (estimated from the duration where the container has none)
    width: int
    height: int


def _probe_video(path: Path) -> _Probe | None:
    """The header of ``path``'s first video stream, or None where PyAV cannot open it (decord may)."""
    import av

    try:
        with tempfile.TemporaryFile() as native, _native_stderr_to(native), av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            frames = int(stream.frames or 0)
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            if frames <= 0 and rate > 0:  # e.g. Matroska stores no count: the duration says it
                if stream.duration is not None and stream.time_base is not None:
                    frames = math.ceil(float(stream.duration * stream.time_base) * rate)
                elif container.duration is not None:
                    frames = math.ceil(container.duration / av.time_base * rate)
            context = stream.codec_context
            return _Probe(frames, int(context.width or 0), int(context.height or 0))
    except Exception:  # anything PyAV cannot open goes to decord, which reports it in its words
        return None


def _check_declared_frames(path: Path, probe: _Probe | None) -> None:
    limit = decode_limits()[1]
    if probe is not None and probe.frames > limit:
        raise _frame_limit_error(path, probe.frames, limit)


def _open_video(path: str | Path, probe: _Probe | None = None):
    """A decord reader of ``path``, once its header's frame count is within ``MAX_VIDEO_FRAMES``
    (decord reserves memory for every declared frame: 2e9 of them abort the process)."""
    import decord

    path = Path(path)
    _check_file(path, "video")
    _check_declared_frames(path, probe or _probe_video(path))
    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own log lines
    with tempfile.TemporaryFile() as native:
        try:
            with _native_stderr_to(native):
                reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as err:  # decord raises its own DECORDError for undecodable input
            raise VideoDecodeError(path, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
    if len(reader) == 0:
        raise ValueError(f"{path}: video has no frames")
    limit = decode_limits()[1]
    if len(reader) > limit:
        raise _frame_limit_error(path, len(reader), limit, "has")
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
    original_size: tuple[int, int]  # (height, width) before resizing (as decoded: see the notes)
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


def sample_video_frames(timestamps: np.ndarray, sampling: SamplingConfig,
                        geometry: PatchGeometry) -> tuple[list[int], float, list[str]]:
    """The frames the model reads of a video whose frames start at ``timestamps`` (seconds):
    (their indices, the effective fps of the sampled frames, notes on what sampling changed).
    ``sample_count`` of them, uniform in time from the first frame's start to the last's."""
    duration = clip_duration(timestamps)
    times = np.linspace(float(timestamps[0]), float(timestamps[-1]), sample_count(duration, sampling, geometry))
    indices = nearest_frames(timestamps, times)
    notes = []
    if int(round(duration * sampling.fps)) > sampling.max_frames:
        notes.append(f"frame cap: {len(timestamps)} frames ({duration:.1f} s) sampled to {len(indices)}")
    if len(timestamps) == 1:
        notes.append("single-frame video: assessed as a still")
    span = float(timestamps[-1]) if len(timestamps) > 1 else 0.0
    fps = (len(indices) - 1) / span if span > 0 else sampling.fps
    return indices, fps, notes


@dataclass
class SampledVideo:
    """The sampled frames of a video that is never decoded: frames made just for the model (a 3D
    mesh's render at the sampled views, ``lmmeval.render.sampled``), each standing for its frame of
    the video they were sampled from, which has frames of ``size`` (height, width).

    ``load()`` gives (uint8 frames (n, h, w, 3), in the order of ``frame_indices``; notes). It runs
    when the input is loaded, so that a batch run holds one input's frames at a time; its
    ``ValueError``/``OSError`` is the input's error. The loader resizes the frames as it resizes a
    decoded video's, and ``Visual.original_size`` is the video's ``size`` (saliency maps and masks
    come at that size, as they do for the video)."""

    load: Callable[[], tuple[np.ndarray, list[str]]]
    frame_indices: list[int]
    fps: float  # effective fps of the sampled frames (``sample_video_frames``)
    size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def load_visual(item, sampling: SamplingConfig, geometry: PatchGeometry, keep_source: bool = False) -> Visual:
    """Path (video or image), PIL image, or array -> ``Visual`` (errors name the input).

    ``sampling`` picks the frames and the pixel budget; ``geometry`` (the model's patches) the
    multiples the frames are resized to. ``keep_source`` also keeps the sampled frames at their
    own size (``Visual.source_frames``), e.g. for overlays: that memory grows with the frame size.
    """
    from PIL import Image

    sample = _Sampler(sampling, geometry, keep_source)
    if isinstance(item, (str, Path)):
        path = Path(item)
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            img, notes = _open_image(path)
            return _from_image(img, str(path), sample, notes, owned=True)
        if suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"{path}: unsupported file type {suffix!r}; expected one of {MEDIA_SUFFIXES}")
        return _from_video_file(path, sample)
    if isinstance(item, SampledVideo):
        return _from_sampled(item, sample)
    if isinstance(item, Image.Image):
        return _from_image(item, "<PIL image>", sample, [], owned=False)
    if isinstance(item, np.ndarray):
        return _from_array(item, sample)
    raise ValueError(f"unsupported input type {type(item).__name__}; expected a path, a PIL image, "
                     "or a uint8 array (H, W, 3) / (T, H, W, 3)")


def _from_sampled(item: SampledVideo, sample: _Sampler) -> Visual:
    arr, notes = item.load()
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) != len(item.frame_indices):
        raise ValueError(f"sampled frames must be uint8 ({len(item.frame_indices)}, H, W, 3), got {arr.dtype} "
                         f"{arr.shape}")
    frames = _Frames(sample, "<sampled video>")
    frames.add(arr)
    frames.size = tuple(item.size)  # what the frames stand for (see SampledVideo)
    return sample.finish(frames, "<sampled video>", False, list(item.frame_indices), item.fps, item.notes + notes)


def load_or_error(item, sampling: SamplingConfig, geometry: PatchGeometry,
                  keep_source: bool = False) -> tuple[str, Visual | str]:
    """(source, ``Visual``) or (source, error message): ``load_visual`` with every failure as data,
    so that a batch run reports the input and carries on. Decoders raise many error types (Pillow's
    DecompressionBombError, MemoryError, PyAV's and decord's own): each becomes the input's error,
    never a traceback. Decode worker processes run this function."""
    source = str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
    t0 = time.perf_counter()
    try:
        visual = load_visual(item, sampling, geometry, keep_source=keep_source)
    except Exception as err:  # noqa: BLE001  (see the docstring)
        message = str(err) if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {err}"
        if isinstance(item, (str, Path)) and source not in message:
            message = f"{source}: cannot load it ({message})"
        return source, message
    visual.load_s = time.perf_counter() - t0
    return source, visual


# ---------------------------------------------------------------------------------------
# Videos: header checked, then only the sampled frames decoded
# ---------------------------------------------------------------------------------------

def _from_video_file(path: Path, sample: _Sampler) -> Visual:
    """A video file's sampled frames: decord first (fast random access); animated GIFs through
    Pillow; through PyAV what decord cannot open (e.g. AV1) and frames over the pixel limit
    (decoded downscaled). Display rotation metadata is applied."""
    _check_file(path, "video")
    if path.suffix.lower() == ".gif":
        video = _GifVideo(path)
    else:
        probe = _probe_video(path)
        _check_declared_frames(path, probe)
        limit = decode_limits()[0]
        if probe is not None and probe.width * probe.height > limit:
            video = _PyAVVideo(path, f"frames over the {limit:,}-pixel decoding limit", probe, limit)
        else:
            try:
                video = _DecordVideo(path, probe)
            except VideoDecodeError as decord_error:
                video = _PyAVVideo(path, decord_error.reason)
    indices, fps, notes = sample_video_frames(video.timestamps, sample.sampling, sample.geometry)
    frames = video.sampled(indices, sample)
    return sample.finish(frames, str(path), False, indices, fps, list(video.notes) + notes)


class _DecordVideo:
    """decord's reader: frame timestamps from its index, sampled frames decoded a chunk at a time."""

    def __init__(self, path: Path, probe: _Probe | None):
        self.path, self.notes = path, []
        self.reader = _open_video(path, probe)
        self.timestamps = self.reader.get_frame_timestamp(range(len(self.reader)))[:, 0].astype(np.float64)

    def sampled(self, indices: list[int], sample: _Sampler) -> _Frames:
        frames = _Frames(sample, self.path)
        try:
            with tempfile.TemporaryFile() as native, _native_stderr_to(native):
                start, step = 0, 1  # one frame first, to learn the frame size
                while start < len(indices):
                    chunk = self.reader.get_batch(indices[start:start + step]).asnumpy()
                    frames.add(chunk)
                    start += step
                    step = max(1, _CHUNK_PIXELS // (chunk.shape[1] * chunk.shape[2]))
        except _Refused:
            raise  # frames.add's own: too small, absurd aspect ratio
        except Exception as err:  # decord's DECORDError: decord opens the file but cannot copy its frames out
            # (seen for some small frame widths, e.g. 48 pixels: a row-stride mismatch inside decord).
            reason = f"{type(err).__name__}: {str(err)[:200]}"
            return _Frames.of(_pyav_frames(self.path, indices, reason, sample.frame_fn(self.path)), indices, sample,
                              self.path)
        return frames


class _PyAVVideo:
    """PyAV, for codecs decord lacks (e.g. AV1) and frames to decode downscaled. A first pass decodes
    every frame for its timestamp and keeps none; ``sampled`` decodes again, keeping the sampled ones."""

    def __init__(self, path: Path, reason: str, probe: _Probe | None = None, max_pixels: int | None = None):
        self.path, self.reason, self.notes, self.size = path, reason, [], None
        if probe is not None and max_pixels is not None:
            scale = math.sqrt(max_pixels / (probe.width * probe.height))
            self.size = (max(2, int(probe.width * scale)), max(2, int(probe.height * scale)))
            self.notes.append(f"decoded at {self.size[0]}x{self.size[1]} from {probe.width}x{probe.height}: frames "
                              f"over the decoding limit of {max_pixels:,} pixels ({PIXELS_ENV})")
        self.timestamps, rotation = _pyav_timestamps(path, reason)
        if rotation:
            self.notes.insert(0, f"rotated {rotation} deg (display metadata)")

    def sampled(self, indices: list[int], sample: _Sampler) -> _Frames:
        return _Frames.of(_pyav_frames(self.path, indices, self.reason, sample.frame_fn(self.path), self.size),
                          indices, sample, self.path)


def _pyav_timestamps(path: Path, reason: str) -> tuple[np.ndarray, int]:
    """Every frame's start time (seconds from the first frame) and the display rotation, decoding
    the frames without converting or keeping any."""
    import av

    codec, timestamps, rotation = "unknown", [], 0
    limit = decode_limits()[1]
    try:
        with tempfile.TemporaryFile() as native, _native_stderr_to(native), av.open(str(path)) as container:
            if container.streams.video:
                stream = container.streams.video[0]
                codec = stream.codec_context.name if stream.codec_context else "unknown"
                for frame in container.decode(stream):
                    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360 // 90 * 90
                    timestamps.append(float(frame.time) if frame.time is not None else len(timestamps) / 25.0)
                    if len(timestamps) > limit:
                        raise _frame_limit_error(path, len(timestamps), limit, "has more than")
    except _Refused:
        raise
    except Exception as err:  # PyAV raises many error types for broken input
        raise VideoDecodeError(path, f"decord: {reason}; PyAV: {type(err).__name__}: {err}") from None
    if not timestamps:
        raise VideoDecodeError(path, f"no video frame could be decoded (codec {codec!r})")
    return np.asarray(timestamps) - timestamps[0], rotation


def _pyav_frames(path: Path, indices: list[int], reason: str, keep, size: tuple[int, int] | None = None) -> dict:
    """{frame index: keep(frame)} for the frames at ``indices`` (in decoding order, as
    ``_pyav_timestamps`` counts them), each uint8 RGB (H, W, 3) with its display rotation applied;
    ``size`` (width, height) decodes them downscaled. Frames are decoded one at a time and only the
    wanted ones converted, so memory holds one frame at its decoded size plus what ``keep`` returns."""
    import av

    wanted, kept = set(indices), {}
    try:
        with tempfile.TemporaryFile() as native, _native_stderr_to(native), av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360 // 90 * 90
                    scaled = {} if size is None else {"width": size[0], "height": size[1]}
                    rgb = frame.to_ndarray(format="rgb24", **scaled)
                    kept[i] = keep(np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)))
                    if len(kept) == len(wanted):
                        break
    except _Refused:
        raise  # keep's own: frames too small
    except Exception as err:  # PyAV raises many error types for broken input
        raise VideoDecodeError(path, f"decord: {reason}; PyAV: {type(err).__name__}: {err}") from None
    missing = sorted(wanted - kept.keys())
    if missing:
        raise VideoDecodeError(path, f"decord: {reason}; PyAV: frame {missing[0]} could not be decoded")
    return kept


class _GifVideo:
    """An animated GIF through Pillow, streamed: a first pass reads every frame's duration, a second
    converts only the sampled frames (Pillow holds one frame at a time)."""

    def __init__(self, path: Path):
        self.path, self.notes = path, []
        img, _ = _open_image(path)  # the logical screen size is checked against the pixel limit
        limit = decode_limits()[1]
        timestamps, t = [], 0.0
        try:
            while True:
                timestamps.append(t)
                t += (img.info.get("duration") or 100) / 1000.0  # ms; browsers show 0 as 100 ms
                if len(timestamps) > limit:
                    raise _frame_limit_error(path, len(timestamps), limit, "has more than")
                try:
                    img.seek(img.tell() + 1)
                except EOFError:
                    break
        except _Refused:
            raise
        except Exception as err:  # Pillow's errors for a damaged frame
            raise ValueError(f"{path}: cannot decode GIF frame {len(timestamps)} "
                             f"({type(err).__name__}: {err})") from None
        finally:
            img.close()
        self.timestamps = np.asarray(timestamps)

    def sampled(self, indices: list[int], sample: _Sampler) -> _Frames:
        keep, wanted, kept = sample.frame_fn(self.path), set(indices), {}
        img, _ = _open_image(self.path)  # afresh: frames are deltas, decoded in order from the first
        try:
            for i in range(max(wanted) + 1):
                if i:
                    img.seek(i)
                if i in wanted:
                    kept[i] = keep(np.asarray(img.convert("RGB")))
        except _Refused:
            raise
        except Exception as err:
            raise ValueError(f"{self.path}: cannot decode GIF frame {i} ({type(err).__name__}: {err})") from None
        finally:
            img.close()
        return _Frames.of(kept, indices, sample, self.path)


# ---------------------------------------------------------------------------------------
# Images: size checked on the header, then decoded and resized in Pillow
# ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _pillow_size_check_off():
    """Pillow refuses images over twice its MAX_IMAGE_PIXELS with its own DecompressionBombError
    while it reads the header; the header is checked against lmmeval's own limit instead, with a
    message that names the file and the setting."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _open_image(path: Path):
    """(the loaded Pillow image, notes): its header's size checked against the pixel limit before
    anything is decoded; a JPEG over it is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's draft mode)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with _pillow_size_check_off():
            img = Image.open(path)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from None
    except Exception as err:  # a plugin's own error for a damaged header
        raise ValueError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None
    notes = _within_pixel_limit(img, path)
    try:
        img.load()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from None
    except Exception as err:
        raise ValueError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from None
    return img, notes


def _within_pixel_limit(img, path: Path) -> list[str]:
    """Notes of a reduced decode, or a ValueError when the image is over the pixel limit."""
    limit = decode_limits()[0]
    w, h = img.size
    if w * h <= limit:
        return []
    if img.format == "JPEG":
        for scale in (2, 4, 8):
            if math.ceil(w / scale) * math.ceil(h / scale) <= limit:
                img.draft(img.mode, (w // scale, h // scale))
                dw, dh = img.size
                if dw * dh <= limit:
                    return [f"decoded at {dw}x{dh} from {w}x{h} (JPEG at 1/{scale} scale): over the decoding limit "
                            f"of {limit:,} pixels ({PIXELS_ENV})"]
                break
    raise _pixel_limit_error(path, w, h, limit)


_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _from_image(img, source: str, sample: _Sampler, notes: list[str], owned: bool) -> Visual:
    """An image as a still. ``owned``: the image was opened here and may be changed in place
    (a caller's PIL image never is)."""
    from PIL import Image, ImageOps

    notes = list(notes)
    if owned:
        ImageOps.exif_transpose(img, in_place=True)  # camera orientation tag, without a copy
    else:
        img = ImageOps.exif_transpose(img)
    if img.mode in _WIDE_GREY:
        # 16-bit / integer / float grey: scale to 8 bits instead of letting PIL clip at 255.
        rgb = Image.fromarray(_grey_to_8_bits(img)).convert("RGB")
        notes.append(f"{img.mode} image scaled to 8 bits")
    else:
        rgb = img if img.mode == "RGB" else img.convert("RGB")  # grey, RGBA (alpha dropped), CMYK, palette
    return sample.still(rgb, source, notes)


def _grey_to_8_bits(img) -> np.ndarray:
    """uint8 (H, W) of a 16-bit, integer or float grey image: divided by its range's top, a band of
    rows at a time (a whole float64 copy would take 8 bytes per pixel)."""
    raw = np.asarray(img)
    peak = float(raw.max()) if raw.size else 0.0
    top = 1.0 if img.mode == "F" and peak <= 1.0 else (65535.0 if peak > 255 else 255.0)
    out = np.empty(raw.shape, np.uint8)
    step = max(1, 1_000_000 // max(raw.shape[1], 1))
    for r in range(0, raw.shape[0], step):
        band = raw[r:r + step].astype(np.float64)
        out[r:r + step] = np.clip(band / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _from_array(arr: np.ndarray, sample: _Sampler) -> Visual:
    from PIL import Image

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
        return sample.still(Image.fromarray(arr[0]), "<array>", [])
    # In-memory videos carry no frame rate: every frame is used (up to the cap), and
    # the sampled frames are taken to be ``sampling.fps`` apart. The count follows the file
    # rule (sample_count): within [min_frames, max_frames] and whole temporal patches, so a short
    # clip repeats frames rather than giving the model fewer than it was trained on.
    sampling = sample.sampling
    t = arr.shape[0]
    n = sample_count(t / sampling.fps, sampling, sample.geometry)  # t frames, sampling.fps apart
    indices = np.linspace(0, t - 1, n).round().astype(int).tolist()
    notes = [f"frame cap: {t} frames sampled to {len(indices)}"] if t > sampling.max_frames else []
    frames = _Frames(sample, "<array>")
    frames.add(arr[indices])
    return sample.finish(frames, "<array>", False, indices, sampling.fps, notes)


# ---------------------------------------------------------------------------------------
# Resizing to the model's frame size
# ---------------------------------------------------------------------------------------

_MAX_ASPECT = 200  # qwen-vl-utils' MAX_RATIO


def frame_size(height: int, width: int, sampling: SamplingConfig, geometry: PatchGeometry) -> tuple[int, int]:
    """The (height, width) a frame is resized to: sides multiples of the geometry's factor (patch x
    merge), area within [min_pixels, max_pixels], aspect kept.

    qwen-vl-utils' ``smart_resize``, the rule Qwen2.5-VL's own pipeline uses, restated here because
    importing qwen-vl-utils imports torch, which decode worker processes must not pay for
    (tests/robustness/test_hostile_inputs.py holds the two equal)."""
    factor, min_pixels, max_pixels = geometry.factor, sampling.min_pixels, sampling.max_pixels
    if max(height, width) / min(height, width) > _MAX_ASPECT:
        raise ValueError(f"absolute aspect ratio must be smaller than {_MAX_ASPECT}, "
                         f"got {max(height, width) / min(height, width)}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_frames(frames: np.ndarray, sampling: SamplingConfig, geometry: PatchGeometry) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 resized (bicubic) to ``frame_size``: what the model's vision tower
    reads. Frames already at that size are returned as they are."""
    from PIL import Image

    h, w = frames.shape[1:3]
    nh, nw = frame_size(h, w, sampling, geometry)
    if (nh, nw) == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in frames])


class _Frames:
    """Sampled frames, resized to the model's size as they arrive: only the chunk being added is
    ever held at its decoded size (and, with ``keep_source``, the sampled frames themselves)."""

    def __init__(self, sample: _Sampler, source):
        self.sample, self.source = sample, source
        self.resized: list[np.ndarray] = []
        self.originals: list[np.ndarray] = []
        self.size: tuple[int, int] | None = None  # (height, width) as decoded

    def add(self, frames: np.ndarray) -> None:
        """Frames (k, H, W, 3) uint8, in sampling order."""
        if self.size is None:
            self.size = frames.shape[1:3]
            self.sample.check(*self.size, self.source)
        self.resized.append(resize_frames(frames, self.sample.sampling, self.sample.geometry))
        if self.sample.keep_source:
            self.originals.append(frames)

    @classmethod
    def of(cls, kept: dict, indices: list[int], sample: _Sampler, source) -> _Frames:
        """From {frame index: (resized (1, h, w, 3), original or None)} (``_Sampler.frame_fn``'s),
        in the order of ``indices`` (which may repeat a frame)."""
        frames = cls(sample, source)
        for i in indices:
            resized, original, size = kept[i]
            frames.size = size
            frames.resized.append(resized)
            if original is not None:
                frames.originals.append(original)
        return frames


@dataclass
class _Sampler:
    """Sampled frames -> a ``Visual`` in the model's geometry."""

    sampling: SamplingConfig
    geometry: PatchGeometry
    keep_source: bool

    def check(self, height: int, width: int, source) -> None:
        """Refuse frames the model's resizing cannot take, naming the input."""
        if height < 4 or width < 4:
            raise _Refused(f"{source}: frames of {width}x{height} pixels are too small to assess")
        if max(height, width) / min(height, width) > _MAX_ASPECT:
            raise _Refused(f"{source}: frames of {width}x{height} pixels are too elongated to assess "
                             f"(aspect ratio over {_MAX_ASPECT})")

    def frame_fn(self, source):
        """What a sequential decoder keeps of each sampled frame (H, W, 3): (resized (1, h, w, 3),
        the frame itself with keep_source else None, (H, W))."""
        def keep(frame: np.ndarray):
            self.check(*frame.shape[:2], source)
            resized = resize_frames(frame[None], self.sampling, self.geometry)
            return resized, frame[None] if self.keep_source else None, frame.shape[:2]
        return keep

    def still(self, rgb, source: str, notes: list[str]) -> Visual:
        """A Pillow RGB image as a still video of one temporal patch, as Qwen2-VL's processor encodes
        images. Resized in Pillow directly: a full-size array copy is made only with keep_source."""
        from PIL import Image

        w, h = rgb.size
        self.check(h, w, source)
        nh, nw = frame_size(h, w, self.sampling, self.geometry)
        small = rgb if (nh, nw) == (h, w) else rgb.resize((nw, nh), Image.BICUBIC)
        copies = self.geometry.temporal_patch_size
        frames = np.repeat(np.asarray(small)[None], copies, axis=0)
        source_frames = np.stack([np.asarray(rgb)] * copies) if self.keep_source else None
        if h * w > self.sampling.max_pixels:
            notes = notes + [f"downscaled {w}x{h} -> {nw}x{nh} (max_pixels {self.sampling.max_pixels})"]
        return Visual(frames, (h, w), True, [0] * copies, 1.0, source, notes, source_frames=source_frames)

    def finish(self, sampled: _Frames, source: str, is_image: bool, indices: list[int], fps: float,
               notes: list[str]) -> Visual:
        frames = np.concatenate(sampled.resized)
        originals = np.concatenate(sampled.originals) if self.keep_source else None
        h, w = sampled.size
        # Fill the last temporal patch by repeating the last frame.
        missing = -len(frames) % self.geometry.temporal_patch_size
        if missing:
            frames = np.concatenate([frames] + [frames[-1:]] * missing)
            indices = indices + indices[-1:] * missing
            if originals is not None:
                originals = np.concatenate([originals] + [originals[-1:]] * missing)
        nh, nw = frames.shape[1:3]
        if h * w > self.sampling.max_pixels:
            notes = notes + [f"downscaled {w}x{h} -> {nw}x{nh} (max_pixels {self.sampling.max_pixels})"]
        return Visual(frames, (h, w), is_image, indices, fps, source, notes, source_frames=originals)
