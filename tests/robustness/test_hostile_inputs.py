"""Hostile inputs: crafted headers, decoder crashes and oversized media cost only their own input,
and memory is bounded by what is sampled, not by what a file declares.

Every crafted file is made here: an mp4 whose `stts` box declares 2e9 frames (decord aborted the
process on it with std::bad_alloc), a PNG whose header declares 30000x30000 pixels (Pillow's
DecompressionBombError), a 12000x12000 PNG, a 300-frame 1000x1000 animated GIF and a 600-frame
640x640 AV1 video (decord cannot read AV1: the PyAV path; these three used to be decoded whole,
2 to 3 GB each).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from lmmeval.io import decode_pool
from lmmeval.io.media import load_visual, write_video
from lmmeval.model.configuration import SamplingConfig
from lmmeval.model.presets import geometry

from .svt_av1 import scheduling_kept

RNG = np.random.default_rng(0)
SAMPLING = SamplingConfig(fps=4.0, max_frames=8, max_pixels=112 * 112)
GEOMETRY = geometry("tiny")


# ------------------------------------------------------------------ crafted files
def _good_mp4(path: Path) -> Path:
    return write_video(path, RNG.integers(0, 255, (16, 64, 96, 3), dtype=np.uint8), 8)


def _good_png(path: Path) -> Path:
    Image.fromarray(RNG.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def _stts_mp4(path: Path) -> Path:
    """A valid mp4 whose `stts` box says its first run of samples is 2e9 long."""
    data = bytearray(_good_mp4(path).read_bytes())
    at = data.index(b"stts")  # then version/flags, entry_count, (sample_count, sample_delta) entries
    struct.pack_into(">I", data, at + 12, 2_000_000_000)
    path.write_bytes(bytes(data))
    return path


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _bomb_png(path: Path) -> Path:
    """A small valid PNG whose IHDR is patched to declare 30000x30000 pixels (CRC fixed)."""
    data = bytearray(_good_png(path).read_bytes())
    at = data.index(b"IHDR")
    struct.pack_into(">II", data, at + 4, 30000, 30000)
    struct.pack_into(">I", data, at + 17, zlib.crc32(bytes(data[at:at + 17])))
    path.write_bytes(bytes(data))
    return path


def _constant_png(path: Path, width: int, height: int, rows_per_block: int = 100) -> Path:
    """A real width x height RGB PNG of one colour, written without compressing every row: one
    block of rows is deflated (ending in a full flush, so that blocks can follow one another) and
    repeated. 12000x12000 takes a fraction of a second and under 0.5 MB."""
    row = b"\x00" + bytes((90, 120, 150)) * width  # filter byte 0, then the pixels
    rows = row * rows_per_block
    deflate = zlib.compressobj(9)
    block = deflate.compress(rows) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height // rows_per_block):
        adler = zlib.adler32(rows, adler)
    stream = block[:2] + block[2:] * (height // rows_per_block) + b"\x03\x00" + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream)
                     + _png_chunk(b"IEND", b""))
    return path


def _gif(path: Path, frames: int, size: int) -> Path:
    """An animated GIF whose frames differ by a moving 10-pixel square (Pillow merges equal frames)."""
    images = []
    for k in range(frames):
        a = np.zeros((size, size), np.uint8)
        y = (k * 3) % (size - 10)
        a[y:y + 10, 10:20] = 1
        a[:, : 1 + k % 7] = 2  # a band of varying width: the frames are not all alike to the eye either
        img = Image.fromarray(a, "P")
        img.putpalette([20, 40, 60, 250, 250, 250, 200, 30, 30] + [0] * 759)
        images.append(img)
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0)
    return path


def _av1(path: Path, frames: int, size: int) -> Path:
    with scheduling_kept(), av.open(str(path), "w") as c:
        s = c.add_stream("libsvtav1", rate=30)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "12"}
        for k in range(frames):
            f = np.full((size, size, 3), (k * 3) % 256, np.uint8)
            f[: size // 4, : size // 4] = (k * 7) % 256
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# ------------------------------------------------------------------ lmmeval score, end to end
# Runs a command and prints its exit status and the largest peak RSS (KB) of it and every process
# it waited for: the kernel's own high-water mark, so no spike between polls is missed. The decode
# workers are waited for by lmmeval, so their peaks count (the max over the tree, not a sum).
_MEASURE = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _score(folder: Path, out: Path) -> tuple[int, int]:
    cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "lmmeval.cli", "score", str(folder),
           "--out", str(out), "--device", "cpu", "-q", "--workers", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    rc, peak_kb = map(int, done.stdout.split()[-2:])
    assert rc in (0, 1), done.stderr[-3000:]  # 134 was decord's abort
    return rc, peak_kb


@pytest.mark.slow  # about 30 s: two runs of the CLI, and the GIF and AV1 files take some seconds to make
def test_score_survives_hostile_inputs_with_bounded_memory(tmp_path):
    alone, folder = tmp_path / "alone", tmp_path / "hostile"
    alone.mkdir(), folder.mkdir()
    _good_mp4(alone / "good.mp4")
    _good_mp4(folder / "good.mp4")
    _good_png(folder / "good.png")
    _stts_mp4(folder / "stts.mp4")
    _bomb_png(folder / "bomb.png")
    _constant_png(folder / "big.png", 12000, 12000)
    _gif(folder / "long.gif", 300, 1000)
    assert "libsvtav1" in av.codecs_available
    _av1(folder / "long_av1.mkv", 600, 640)

    rc_alone, baseline_kb = _score(alone, tmp_path / "alone.jsonl")
    rc, peak_kb = _score(folder, tmp_path / "r.jsonl")
    assert rc_alone == 0 and rc == 1  # 1: some inputs failed
    rows = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()}
    assert set(rows) == {"good.mp4", "good.png", "stts.mp4", "bomb.png", "big.png", "long.gif", "long_av1.mkv"}
    for name in ("good.mp4", "good.png", "long.gif", "long_av1.mkv"):  # scored, only the sampled frames decoded
        assert rows[name]["error"] is None and rows[name]["quality"] is not None, rows[name]["error"]
    for name in ("long.gif", "long_av1.mkv"):
        assert any(n.startswith("frame cap:") for n in rows[name]["notes"])
    assert "stts.mp4: the video declares 2,000,000,000 frames" in rows["stts.mp4"]["error"]
    assert "LMMEVAL_MAX_VIDEO_FRAMES" in rows["stts.mp4"]["error"]
    # A PNG cannot be decoded reduced: 144 megapixels would take about 600 MB, so it is refused.
    for name, size in (("bomb.png", "30000x30000"), ("big.png", "12000x12000")):
        error = rows[name]["error"]
        assert f"{name}: {size} pixels" in error and "over the decoding limit" in error
        assert "LMMEVAL_MAX_PIXELS" in error
    assert (peak_kb - baseline_kb) / 1024 < 400, (peak_kb, baseline_kb)


# ------------------------------------------------------------------ crashes and header checks
def test_a_crafted_frame_count_is_refused_before_decord_reads_it(tiny_assessor, tmp_path):
    """decord reserved memory for 2e9 frames and aborted the process (in a DataLoader worker: the run)."""
    files = [str(_good_mp4(tmp_path / "a.mp4")), str(_stts_mp4(tmp_path / "stts.mp4")),
             str(_good_png(tmp_path / "b.png"))]
    results = tiny_assessor.assess(files, batch_size=2, on_error="return", workers=1)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.startswith(f"{files[1]}: the video declares 2,000,000,000 frames, over the limit")


CRASHY = '''
import os
from lmmeval.io.media import load_or_error

def load(path, *args):
    if "crash" in os.path.basename(path):
        os.abort()  # what decord's uncaught std::bad_alloc did
    return load_or_error(path, *args)
'''


def test_a_decoder_crash_costs_only_its_input(tiny_assessor, tmp_path, monkeypatch):
    """A worker that dies becomes its input's error (naming the signal and the file); a new worker
    decodes the inputs after it, and the results stay in input order."""
    (tmp_path / "crashy.py").write_text(CRASHY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(decode_pool, "TARGET", "crashy:load")
    names = ["a.mp4", "crash1.png", "b.png", "c.mp4", "crash2.mp4", "d.png"]
    files = [str(_good_mp4(tmp_path / n) if n.endswith(".mp4") else _good_png(tmp_path / n)) for n in names]
    results = tiny_assessor.assess(files, batch_size=2, on_error="return", workers=1)
    assert [r.source for r in results] == files
    for name, path, r in zip(names, files, results):
        if name.startswith("crash"):
            crashed = f"{path}: decoder crashed (signal {int(signal.SIGABRT)}, SIGABRT) reading this file"
            assert r.error.startswith(crashed), r.error
        else:
            assert r.ok, r.error
    inline = tiny_assessor.assess(files[2:4], batch_size=2, on_error="return")  # in this process
    assert [r.quality for r in results[2:4]] == [r.quality for r in inline]


def _decode_workers() -> list[int]:
    """Process ids of this process's decode workers (children running the pool's boot line)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if b"lmmeval.io.decode_pool" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.append(int(pid))
            except FileNotFoundError:
                pass
    return pids


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # dead, not yet reaped by its parent
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_ignore_ctrl_c_and_end_with_the_run(tiny_assessor, tmp_path):
    """Ctrl-C reaches the whole process group: the workers ignore it and the parent ends them;
    a KeyboardInterrupt in the caller (also the CLI's SIGTERM) ends them at once."""
    files = [str(_good_png(tmp_path / f"{i}.png")) for i in range(6)]
    batches = tiny_assessor.assess_batches(files, batch_size=2, on_error="return", workers=1)
    assert all(r.ok for r in next(batches))
    workers = _decode_workers()
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGINT)
    assert all(r.ok for r in next(batches))  # the same worker goes on
    assert _decode_workers() == workers
    with pytest.raises(KeyboardInterrupt, match="stop"):
        batches.throw(KeyboardInterrupt("stop"))
    assert _gone(workers[0]) and _decode_workers() == []


KILLED_PARENT = '''
import sys, time
from lmmeval.io.decode_pool import DecodePool
pool = DecodePool(1, ())
pool.submit(0, sys.argv[1])  # starts the worker (its answer, an error, does not matter)
pool.result(0)
print(pool.pids()[0], flush=True)
time.sleep(60)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT, str(tmp_path / "none.png")],
                              stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)  # no clean-up runs in the parent
    finally:
        parent.wait()
    assert _gone(worker)


# ------------------------------------------------------------------ limits
def test_pixel_limit_is_checked_on_the_header_with_the_setting_named(tmp_path, monkeypatch):
    bomb = _bomb_png(tmp_path / "bomb.png")
    with pytest.raises(ValueError, match=r"bomb\.png: 30000x30000 pixels \(900\.0 megapixels\) is over the decoding "
                                         r"limit of 40,000,000 pixels per frame; set the environment variable "
                                         r"LMMEVAL_MAX_PIXELS"):
        load_visual(str(bomb), SAMPLING, GEOMETRY)
    # The limit is the environment's: 80x60 fails at 4000 pixels, and a JPEG is decoded at 1/2 scale.
    monkeypatch.setenv("LMMEVAL_MAX_PIXELS", "4000")
    with pytest.raises(ValueError, match=r"good\.png: 80x60 pixels .* limit of 4,000 pixels"):
        load_visual(str(_good_png(tmp_path / "good.png")), SAMPLING, GEOMETRY)
    Image.fromarray(RNG.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    visual = load_visual(str(tmp_path / "photo.jpg"), SAMPLING, GEOMETRY)
    assert visual.original_size == (30, 40)
    assert visual.notes[0] == ("decoded at 40x30 from 80x60 (JPEG at 1/2 scale): over the decoding limit of "
                               "4,000 pixels (LMMEVAL_MAX_PIXELS)")


def test_video_frames_over_the_pixel_limit_are_decoded_downscaled(tmp_path, monkeypatch):
    path = _good_mp4(tmp_path / "clip.mp4")  # 96x64
    monkeypatch.setenv("LMMEVAL_MAX_PIXELS", str(48 * 32))
    visual = load_visual(str(path), SAMPLING, GEOMETRY, keep_source=True)
    assert visual.original_size == (32, 48) and visual.source_frames.shape[1:] == (32, 48, 3)
    assert "decoded at 48x32 from 96x64" in visual.notes[0]


# ------------------------------------------------------------------ only the sampled frames
def _gif_reference(path: Path) -> np.ndarray:
    """Every frame, decoded the straightforward way."""
    return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])


def _pyav_reference(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


@pytest.mark.parametrize("kind", ["gif", "av1"])
def test_only_the_sampled_frames_are_kept(tmp_path, kind):
    """The frames of a long GIF and of an AV1 video (PyAV's path) equal a full decode's at the
    sampled indices, while the decode holds a fraction of the full decode's memory."""
    if kind == "gif":
        path, reference = _gif(tmp_path / "long.gif", 120, 200), _gif_reference
    else:
        path, reference = _av1(tmp_path / "long.mkv", 120, 192), _pyav_reference
    full = reference(path)
    assert len(full) == 120
    visual = load_visual(str(path), SAMPLING, GEOMETRY, keep_source=True)
    assert len(visual.frame_indices) == 8 and len(set(visual.frame_indices)) == 8
    np.testing.assert_array_equal(visual.source_frames, full[visual.frame_indices])
    tracemalloc.start()
    try:
        load_visual(str(path), SAMPLING, GEOMETRY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < full.nbytes / 4, (peak, full.nbytes)  # 8 of 120 frames, one or two in flight


# ------------------------------------------------------------------ the worker stays torch-free
def test_decoding_imports_neither_torch_nor_qwen_vl_utils(tmp_path):
    """A decode worker starts in well under a second only if decoding a video and an image imports
    no torch (qwen-vl-utils imports it)."""
    video, image = _good_mp4(tmp_path / "a.mp4"), _good_png(tmp_path / "b.png")
    code = ("import sys; from lmmeval.io import decode_pool; from lmmeval.io.media import load_visual; "
            "from lmmeval.model.configuration import SamplingConfig, PatchGeometry; "
            "g = PatchGeometry(14, 2, 2); [load_visual(p, SamplingConfig(), g) for p in sys.argv[1:]]; "
            "print(sorted(m for m in ('torch', 'qwen_vl_utils', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(video), str(image)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("height, width", [(64, 96), (1080, 1920), (3000, 4000), (50, 70), (4, 700), (28, 28),
                                           (224, 224), (113, 57), (2160, 3840), (5, 5), (720, 1281)])
@pytest.mark.parametrize("max_pixels", [112 * 112, 448 * 448, 12544])
def test_frame_size_is_qwen_vl_utils_rule(height, width, max_pixels):
    """media.frame_size restates qwen-vl-utils' smart_resize (which imports torch): the same sizes."""
    from qwen_vl_utils import smart_resize

    from lmmeval.io.media import frame_size

    sampling = SamplingConfig(max_pixels=max_pixels)
    expected = smart_resize(height, width, factor=GEOMETRY.factor, min_pixels=sampling.min_pixels,
                            max_pixels=max_pixels)
    assert frame_size(height, width, sampling, GEOMETRY) == expected
