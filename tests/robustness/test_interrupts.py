"""Interrupted runs: `lmmeval score` killed with SIGKILL and resumed; `lmmeval render` (and the
rendering inside `lmmeval score`) stopped by Ctrl-C, SIGTERM and SIGKILL; a non-finite training loss.
(Training killed between checkpoints and resumed: tests/test_training.py, under ZeRO-2 and ZeRO-3.)"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lmmeval.training import TrainConfig, run_stage


@pytest.fixture(scope="module")
def checkpoint(tiny_assessor, tmp_path_factory):
    return tiny_assessor.save_pretrained(tmp_path_factory.mktemp("ckpt"))


@pytest.mark.slow
def test_score_killed_with_sigkill_then_resumed(checkpoint, synthetic_raw, tmp_path):
    """30 inputs, 5 of them broken; the run is killed with SIGKILL part-way and resumed. Every input
    ends up in the file exactly once with the scores an uninterrupted run gives; the earlier failures
    are tried again; the resumed run's summary and exit status count the whole file (its 5 failures),
    not only what it did; decord's own "ERROR opening" lines are not printed."""
    folder = tmp_path / "videos"
    folder.mkdir()
    source = sorted((synthetic_raw / "videos").glob("*.mp4"))
    broken = {f"v{i:02d}.mp4" for i in (1, 7, 13, 19, 25)}
    for i in range(30):  # 30 distinct inputs
        name = f"v{i:02d}.mp4"
        if name in broken:
            (folder / name).write_text("not a video\n")
        else:
            shutil.copy(source[i % len(source)], folder / name)
    out = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "lmmeval.cli", "score", str(folder), "--model", str(checkpoint), "--out", str(out),
           "--batch-size", "1", "--device", "cpu", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # A bound on the wait, not a speed claim: a loaded 2-core machine may take minutes to score 10.
        deadline = time.time() + 500
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 10:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    failed_before = sum(r["error"] is not None for r in before)
    assert 10 <= len(before) < 30 and failed_before >= 1  # v01 and v07 fall before the kill
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 1, resumed.stderr[-2000:]  # the file holds failures
    rows = {json.loads(line)["path"]: json.loads(line) for line in out.read_text().splitlines()}
    assert len(out.read_text().splitlines()) == 30 and len(rows) == 30  # every input exactly once
    assert {p.rsplit("/", 1)[1] for p, r in rows.items() if r["error"] is not None} == broken
    assert f"{failed_before} of them failed before" in resumed.stdout
    assert "holds 25 scored" in resumed.stdout and "and 5 failed" in resumed.stdout
    assert "ERROR opening" not in resumed.stderr
    # The scores equal an uninterrupted run's.
    fresh = tmp_path / "fresh.jsonl"
    fresh_cmd = [str(fresh) if arg == str(out) else arg for arg in cmd]
    assert subprocess.run(fresh_cmd, timeout=300, capture_output=True).returncode == 1
    for line in fresh.read_text().splitlines():
        row = json.loads(line)
        assert rows[row["path"]]["quality"] == row["quality"], row["path"]
    # --keep-failed: nothing left to do, the failures stay and still count.
    again = subprocess.run(cmd + ["--resume", "--keep-failed"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "0 scored now, 30 already in" in again.stdout


def _stage3_config(manifest, out, init_from, **kw):
    return TrainConfig(**({"stage": 3, "manifest": str(manifest), "output_dir": str(out), "init_from": str(init_from),
                           "steps": 6, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "save_every": 3, "log_every": 1,
                           "device": "cpu"} | kw))


@pytest.mark.slow
def test_non_finite_loss_stops_with_step_batch_and_state(checkpoint, prepared_manifest, tmp_path, monkeypatch):
    from lmmeval.training.stages import STAGES

    real = STAGES[3].loss

    def poisoned(config, engine, batch):
        losses = real(config, engine, batch)
        return {**losses, "loss": losses["loss"] * torch.tensor(float("nan"))}

    monkeypatch.setattr(STAGES[3], "loss", poisoned)
    with pytest.raises(RuntimeError, match=r"non-finite loss nan at step 0, batch \['g\d\d_\d{4}', 'g\d\d_\d{4}'\]"):
        run_stage(_stage3_config(prepared_manifest, tmp_path / "nan", checkpoint), progress=False)
    assert any((tmp_path / "nan" / "nan_state").rglob("*.pt"))


# --- Rendering stopped part-way -------------------------------------------------------------------
# A run that goes on rendering after the signal is told apart from one that stops by a deadline in
# frame times (measured here, so it scales with the machine): the long renders below take far more
# frame times than that; stopping takes none (the interpreter's exit is the fixed part).
RENDER_SIZE, RENDER_SPP, SHORT, LONG = 128, 2, ("24", "4"), ("24", "40")  # fps, seconds: 96 and 960 frames
# Samples per pixel that make a frame take seconds (LLVM, 128x128): `lmmeval score` renders only a
# mesh's 8 sampled frames, which must still be under way when the signal comes.
SLOW_SPP = "2048"


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every live process; the start time tells a reused pid apart."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":  # a zombie has ended; only its parent's wait is missing
                table[int(entry)] = (int(fields[1]), fields[19])
    return table


def _descendants(root: int) -> set[tuple[int, str]]:
    table = _proc_table()
    found, todo = set(), [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, start) in table.items():
            if ppid == parent:
                found.add((pid, start))
                todo.append(pid)
    return found


def _still_running(processes: set[tuple[int, str]], grace: float = 0.0) -> set[tuple[int, str]]:
    """Those of ``processes`` alive after up to ``grace`` seconds."""
    end = time.monotonic() + grace
    while True:
        table = _proc_table()
        alive = {(pid, start) for pid, start in processes if pid in table and table[pid][1] == start}
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.05)


@pytest.fixture(scope="module")
def twin_heads(tmp_path_factory):
    """a.ply and b.ply, one head twice: b, interrupted and resumed, must come out as a did."""
    pytest.importorskip("trimesh")
    pytest.importorskip("mitsuba")
    spec = importlib.util.spec_from_file_location("make_example_heads", Path(__file__).parents[2] / "tools" /
                                                  "make_example_heads.py")
    heads = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heads)
    folder = tmp_path_factory.mktemp("twins")
    heads.head().export(folder / "a.ply")
    shutil.copy(folder / "a.ply", folder / "b.ply")
    return folder


@pytest.fixture(scope="module")
def stop_deadline(twin_heads):
    """Seconds that stopping may take: a few frames' worth (one frame timed here, the scene built
    once as the render workers do) and the exit of an interpreter that has torch loaded."""
    from lmmeval.render.assets import load_asset
    from lmmeval.render.scene import FrameRenderer

    renderer = FrameRenderer(load_asset(twin_heads / "a.ply"), RENDER_SIZE, RENDER_SPP)
    renderer.render(0.0)
    start = time.monotonic()
    for azimuth in (-60.0, 0.0, 60.0):
        renderer.render(azimuth)
    frame = (time.monotonic() - start) / 3
    return 4.0 + 6 * frame


def _render_cmd(folder: Path, out: Path, length: tuple[str, str]) -> list[str]:
    return [sys.executable, "-m", "lmmeval.cli", "render", str(folder), "--out", str(out), "--size", str(RENDER_SIZE),
            "--spp", str(RENDER_SPP), "--fps", length[0], "--seconds", length[1], "--workers", "2", "-q"]


def _signal_when(cmd: list[str], ready, sig: int, log: Path) -> tuple[int, float, set]:
    """Run ``cmd``, send ``sig`` once ``ready(pid)``; returns (exit status, seconds from the signal
    to the exit, every process seen below it). SIGINT goes to the whole process group, as a
    terminal's Ctrl-C does."""
    seen: set = set()
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not ready(proc.pid):
            assert proc.poll() is None, f"ended before the signal: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "never got ready"
            seen |= _descendants(proc.pid)
            time.sleep(0.01)
        seen |= _descendants(proc.pid)
        assert seen, "no render worker ran"
        sent = time.monotonic()
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else os.kill(proc.pid, sig)
        while proc.poll() is None and time.monotonic() < sent + 120:
            seen |= _descendants(proc.pid)
            time.sleep(0.01)
        return proc.poll(), time.monotonic() - sent, seen
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _is_render_worker(pid: int) -> bool:
    try:
        return b"lmmeval.render.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _rendering(seconds: float):
    """ready(pid): a render worker has been up for ``seconds`` (the scalar and LLVM renderers run one
    per core). Other children do not count: a library's short-lived probe while the model loads, or
    the worker `lmmeval score` starts and ends at once to check a forced variant."""
    since: dict[int, float] = {}

    def ready(pid: int) -> bool:
        now = time.monotonic()
        workers = {child for child, _ in _descendants(pid) if _is_render_worker(child)}
        for child in workers:
            since.setdefault(child, now)
        return any(now > since[child] + seconds for child in workers)

    return ready


@pytest.mark.slow
def test_render_ctrl_c_keeps_the_finished_asset_and_resume_completes(twin_heads, stop_deadline, tmp_path):
    """Ctrl-C (SIGINT to the process group) as a finishes: status 130, its render workers ended;
    a's video and views stay, nothing of b is left (no partial video, views or frame); --resume
    renders b alone, and b's frames equal a's (the same head: a frame that the signal cut short
    would show as dark tiles)."""
    from lmmeval.io.media import read_video

    out, log = tmp_path / "out", tmp_path / "log.txt"
    status, took, seen = _signal_when(_render_cmd(twin_heads, out, SHORT), lambda pid: (out / "a.mp4").exists(),
                                      signal.SIGINT, log)
    assert status == 130, log.read_text()[-2000:]
    assert "lmmeval render: interrupted" in log.read_text()
    assert took < stop_deadline, f"stopping took {took:.1f} s"
    assert not _still_running(seen), "render workers outlived the run"
    assert sorted(p.name for p in out.rglob("*")) == ["a.mp4", "a_views.png"]
    resumed = subprocess.run(_render_cmd(twin_heads, out, SHORT) + ["--resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "1 rendered, 1 already complete" in resumed.stdout
    a, b = read_video(out / "a.mp4")[0], read_video(out / "b.mp4")[0]
    assert len(a) == 96 and np.array_equal(a, b)
    assert sorted(p.name for p in out.rglob("*")) == ["a.mp4", "a_views.png", "b.mp4", "b_views.png"]


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, id="ctrl-c"),
                                 pytest.param(signal.SIGTERM, id="sigterm", marks=pytest.mark.slow)])
def test_render_stopped_mid_asset_within_frames(twin_heads, stop_deadline, sig, tmp_path):
    """Ctrl-C or SIGTERM a few frames into a long asset: status 130 within a few frame times, not
    once the asset's 960 frames are done; no render worker left, no file (a was not finished)."""
    out, log = tmp_path / "out", tmp_path / "log.txt"
    status, took, seen = _signal_when(_render_cmd(twin_heads, out, LONG), _rendering(1.0), sig, log)
    assert status == 130, log.read_text()[-2000:]
    assert took < stop_deadline, f"stopping took {took:.1f} s"
    assert not _still_running(seen), "render workers outlived the run"
    assert not out.exists() or not list(out.rglob("*"))


@pytest.mark.slow
def test_render_killed_leaves_no_render_workers(twin_heads, tmp_path):
    """SIGKILL leaves the parent no chance to clean up: its render workers end with it (the kernel's
    parent-death signal) rather than render on as orphans; no video or views is left."""
    out, log = tmp_path / "out", tmp_path / "log.txt"
    status, _, seen = _signal_when(_render_cmd(twin_heads, out, LONG), _rendering(1.0), signal.SIGKILL, log)
    assert status == -signal.SIGKILL
    assert not _still_running(seen, grace=5.0), "render workers outlived their killed parent"
    assert not list(out.rglob("*.mp4")) and not list(out.rglob("*.png"))


@pytest.mark.slow
def test_score_on_a_mesh_stopped_by_sigterm_while_rendering(twin_heads, stop_deadline, tmp_path):
    """SIGTERM while `lmmeval score --keep-renders` renders a mesh's video: status 130 within a few
    frame times, no render worker outlives it, and the render cache holds no video or views (none
    was complete), so a later run renders the mesh afresh rather than scoring a partial video."""
    out, log = tmp_path / "r.jsonl", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "lmmeval.cli", "score", str(twin_heads / "a.ply"), "--out", str(out),
           "--render-size", str(RENDER_SIZE), "--render-spp", str(RENDER_SPP), "--render-fps", LONG[0],
           "--render-seconds", LONG[1], "--render-workers", "2", "--keep-renders", "--device", "cpu", "-q"]
    status, took, seen = _signal_when(cmd, _rendering(1.0), signal.SIGTERM, log)
    assert status == 130, log.read_text()[-2000:]
    assert took < stop_deadline, f"stopping took {took:.1f} s"
    assert not _still_running(seen), "render workers outlived the run"
    cache = tmp_path / "r.jsonl.renders"
    assert not list(cache.rglob("*.mp4")) and not list(cache.rglob("*.png"))


@pytest.mark.slow
def test_score_on_a_mesh_stopped_while_rendering_the_frames_the_model_reads(twin_heads, stop_deadline, tmp_path):
    """The same while `lmmeval score` renders only the frames the model reads (slow frames here, so
    that the signal finds them under way): status 130 within a few frame times, no render worker
    left, no result row for the mesh."""
    out, log = tmp_path / "r.jsonl", tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "lmmeval.cli", "score", str(twin_heads / "a.ply"), "--out", str(out),
           "--render-size", str(RENDER_SIZE), "--render-spp", SLOW_SPP, "--render-workers", "2", "--device", "cpu",
           "-q"]
    status, took, seen = _signal_when(cmd, _rendering(1.0), signal.SIGTERM, log)
    assert status == 130, log.read_text()[-2000:]
    assert took < stop_deadline, f"stopping took {took:.1f} s"
    assert not _still_running(seen), "render workers outlived the run"
    assert not out.exists() or out.read_text() == ""
    assert not (tmp_path / "r.jsonl.renders").exists()
    assert not out.exists() or out.read_text() == ""
