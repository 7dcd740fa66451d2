"""Interrupted runs: `lmmeval score` killed with SIGKILL and resumed, and a non-finite training loss.
(Training killed between checkpoints and resumed: tests/test_training.py, under ZeRO-2 and ZeRO-3.)"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

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
        deadline = time.time() + 120
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
