"""Every kind of awkward input gets a correct result or a clear error naming the file, in
`Assessor.assess` and in `lmmeval score`, and a batch run continues past it."""

import fractions
import json

import av
import numpy as np
import pytest
from PIL import Image

from lmmeval.cli import main
from lmmeval.io.media import write_video

from .svt_av1 import scheduling_kept

RNG = np.random.default_rng(0)


def _frames(t, h, w):
    return RNG.integers(0, 255, (t, h, w, 3), dtype=np.uint8)


def _encode(path, frames, fps, codec="libx264", rotation=None, pts_ms=None):
    with scheduling_kept(), av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        if pts_ms is not None:
            s.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], fractions.Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# name -> (expected "ok" or an error substring, and for ok a check on the result)
CASES = {
    "missing.mp4": "no such video file",
    "zero_byte.mp4": "file is empty (0 bytes)",
    "truncated.mp4": "cannot decode video",
    "text_named.mp4": "cannot decode video",
    "av1.mkv": "ok",  # decord cannot open AV1: decoded by the PyAV fallback
    "one_frame.mp4": "ok",
    "long.mp4": "ok",
    "huge.png": "ok",
    "odd_size.mp4": "ok",
    "narrow_48.mp4": "ok",  # decord opens it but cannot copy its frames out: read through PyAV
    "vfr.mp4": "ok",
    "rotated.mp4": "ok",
    "grey.png": "ok",
    "rgba.png": "ok",
    "cmyk.jpg": "ok",
    "sixteen_bit.png": "ok",
    "animated.gif": "ok",
    "notes.txt.webm": "cannot decode video",
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd_inputs")
    (d / "zero_byte.mp4").write_bytes(b"")
    write_video(d / "whole.mp4", _frames(20, 64, 96), 10)
    data = (d / "whole.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the moov atom at the end is lost
    (d / "whole.mp4").unlink()
    (d / "text_named.mp4").write_text("this is not a video\n")
    (d / "notes.txt.webm").write_text("neither is this\n")
    _encode(d / "av1.mkv", _frames(6, 64, 96), 10, codec="libsvtav1")
    write_video(d / "one_frame.mp4", _frames(1, 64, 96), 10)
    write_video(d / "long.mp4", _frames(300, 48, 64), 30)  # 10 s: more than max_frames at 2 fps
    Image.fromarray(_frames(1, 3000, 4000)[0]).save(d / "huge.png")
    write_video(d / "odd_size.mp4", _frames(8, 50, 70), 8)  # not multiples of 28
    write_video(d / "narrow_48.mp4", _frames(8, 48, 48), 8)
    _encode(d / "vfr.mp4", _frames(30, 64, 96), 30, pts_ms=[33 * i if i < 15 else 495 + 200 * (i - 15) for i in range(30)])
    _encode(d / "rotated.mp4", _frames(6, 64, 96), 10, rotation=90)
    base = Image.fromarray(_frames(1, 60, 80)[0])
    base.convert("L").save(d / "grey.png")
    base.convert("RGBA").save(d / "rgba.png")
    base.convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(np.linspace(0, 65535, 60 * 80).reshape(60, 80).astype(np.uint16)).save(d / "sixteen_bit.png")
    frames = [Image.fromarray(f) for f in _frames(6, 60, 80)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
    return d


def _check_ok(name, r, tmp_root):
    assert r.ok, f"{name}: {r.error}"
    assert 0 <= r.quality <= 100 and r.quality_level is not None
    assert r.saliency.dtype == np.float32 and 0 <= r.saliency.min() <= r.saliency.max() <= 1
    if name == "rotated.mp4":  # 96 wide x 64 high, displayed rotated by 90 degrees
        assert r.saliency.shape[1:] == (96, 64)
    if name == "long.mp4":
        assert any("frame cap" in n for n in r.notes) and r.saliency.shape[0] == 8
    if name == "huge.png":
        assert any("downscaled" in n for n in r.notes) and r.saliency.shape == (3000, 4000)
    if name == "one_frame.mp4":
        assert any("single-frame" in n for n in r.notes)
    if name == "sixteen_bit.png":
        assert any("8 bits" in n for n in r.notes)
    if name == "vfr.mp4":  # sampled uniformly in time: the slow second half gets most frames
        assert sum(i >= 15 for i in r.frame_indices) > sum(i < 15 for i in r.frame_indices)


def test_assess_handles_every_case_in_one_batch(tiny_assessor, inputs):
    names = list(CASES)
    results = tiny_assessor.assess([str(inputs / n) for n in names], batch_size=4, on_error="return")
    assert len(results) == len(names)
    for name, r in zip(names, results):
        if CASES[name] == "ok":
            _check_ok(name, r, inputs)
        else:
            assert not r.ok and name in r.error and CASES[name] in r.error, (name, r.error)


def test_assess_raises_with_the_file_name(tiny_assessor, inputs):
    with pytest.raises(ValueError, match=r"truncated\.mp4: cannot decode video"):
        tiny_assessor.assess(str(inputs / "truncated.mp4"))


@pytest.mark.parametrize("workers", [0, 1])
def test_score_cli_continues_past_failures(tiny_assessor, inputs, tmp_path, workers):
    """In this process and in a decode worker process, the same rows."""
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "r.jsonl"
    cases = {n: e for n, e in CASES.items() if n != "missing.mp4"}  # a missing named input stops score before it starts
    files = [str(inputs / n) for n in cases]
    assert main(["score", *files, "--model", str(ckpt), "--out", str(out), "--device", "cpu", "-q",
                 "--workers", str(workers)]) == 1
    rows = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(rows) == set(cases)  # nothing dropped, failures included
    for name, expected in cases.items():
        if expected == "ok":
            assert rows[name]["error"] is None and rows[name]["quality"] is not None
        else:
            assert expected in rows[name]["error"] and name in rows[name]["error"]


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4), np.uint8), r"\(H, W, 3\) or \(T, H, W, 3\)"),
    (np.zeros((2, 3, 8, 8, 3), np.uint8), r"\(H, W, 3\) or \(T, H, W, 3\)"),
    (np.zeros((8, 8, 4), np.uint8), r"got shape \(8, 8, 4\)"),
    (np.full((8, 8, 3), 1.5), r"\[0, 1\]"),
    (np.full((8, 8, 3), np.nan), r"finite"),
    (np.zeros((8, 8, 3), np.int16), r"uint8 in \[0, 255\] or float in \[0, 1\]"),
])
def test_arrays_of_wrong_shape_or_range(tiny_assessor, array, message):
    with pytest.raises(ValueError, match=message):
        tiny_assessor.assess(array)


@pytest.mark.parametrize("frames, expected", [
    (3, [0, 1, 1, 2]),              # shorter than min_frames=4: frames repeat, count raised to 4
    (5, [0, 1, 3, 4]),              # odd count made even: linspace(0, 4, 4) = 0, 1.33, 2.67, 4, rounded
    (20, [0, 3, 5, 8, 11, 14, 16, 19]),  # capped at max_frames=8, spread over the clip
])
def test_array_videos_follow_the_file_frame_count_rule(frames, expected):
    """In-memory videos get the count sample_count gives files: within [min, max] and even."""
    from lmmeval.io.media import load_visual
    from lmmeval.model.configuration import SamplingConfig
    from lmmeval.model.presets import geometry

    sampling = SamplingConfig(fps=8.0, min_frames=4, max_frames=8, max_pixels=56 * 56)
    visual = load_visual(_frames(frames, 28, 28), sampling, geometry("tiny"))
    assert visual.frame_indices == expected
    assert len(visual.frames) == len(expected)


@pytest.mark.parametrize("frames, fps, expected", [
    # 8 frames at 4 fps last 2 s: all 8 at 4 fps (measuring to the last frame's start, 1.75 s, gave 6)
    (8, 4, [0, 1, 2, 3, 4, 5, 6, 7]),
    (16, 8, np.linspace(0, 15, 8).round().astype(int).tolist()),  # the training renders: every other frame
    (240, 60, np.linspace(0, 239, 8).round().astype(int).tolist()),  # the paper's 4 s at 60 fps: capped at 8
    (6, 8, [0, 5]),  # 0.75 s at 4 fps is 3 frames, rounded down to one whole temporal patch: 2
])
def test_video_files_are_sampled_over_their_whole_length(tmp_path, frames, fps, expected):
    """A constant-rate clip of T frames at f fps lasts T / f seconds; sampled at 4 fps (at most 8)
    its frames are spread evenly from the first to the last: round(linspace(0, T - 1, n))."""
    from lmmeval.io.media import load_visual
    from lmmeval.model.configuration import SamplingConfig
    from lmmeval.model.presets import geometry

    path = tmp_path / "clip.mp4"
    _encode(path, _frames(frames, 32, 32), fps)
    sampling = SamplingConfig(fps=4.0, max_frames=8, max_pixels=56 * 56)
    assert load_visual(str(path), sampling, geometry("tiny")).frame_indices == expected
