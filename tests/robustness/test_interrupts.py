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
    folder = tmp_path / "videos"
    folder.mkdir()
    source = sorted((synthetic_raw / "videos").glob("*.mp4"))
    for i in range(30):  # 30 distinct inputs
        shutil.copy(source[i % len(source)], folder / f"v{i:02d}.mp4")
    out = tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "lmmeval.cli", "score", str(folder), "--model", str(checkpoint), "--out", str(out),
           "--batch-size", "1", "--device", "cpu", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = out.read_bytes().count(b"\n")
    assert 3 <= done_before < 30
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = out.read_text().splitlines()
    paths = [json.loads(line)["path"] for line in lines]  # every line is complete JSON
    assert len(paths) == 30 and len(set(paths)) == 30  # every input exactly once
    assert f"{done_before} already in" in resumed.stdout or f"{done_before + 1} already in" in resumed.stdout


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
