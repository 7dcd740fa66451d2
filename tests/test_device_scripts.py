"""The scripts for machines the test suite does not run on, run here at the tiny preset's size:
`make gpu-check` (tools/gpu_check.sh, for an H100/H200) and `make check-7b` (tools/check_7b.py,
the exact 7B shape on a 24 GB CPU machine). What they measure needs those machines; that they run
end to end, and write what they promise, is checked here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # about a minute
def test_gpu_check_runs_end_to_end_at_tiny_size_on_a_cpu(tmp_path):
    env = os.environ | {"PRESET": "tiny", "DEVICE": "cpu", "SMALL": "1", "WHEELS": "none", "PYTHON": sys.executable,
                        "WORK": str(tmp_path / "work"), "RESULT": str(tmp_path / "result.json")}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    runs = result["bench"]["112"]["assess"]
    assert {(r["vision_path"], r["mode"]) for r in runs} == {
        (path, mode) for path in ("transformers", "batched windows")
        for mode in ("scores only", "with the distortion answer")}
    assert result["bench"]["112"]["attention"] == "sdpa" and result["bench"]["112"]["train_stage2"]["step_s"] > 0
    assert sorted(result["stages"]) == ["1", "2", "3"] and all(s["steps"] == 2 for s in result["stages"].values()), \
        done.stdout[-3000:] + done.stderr[-3000:]
    assert "skipped" in result["pytest_gpu"][0]  # no CUDA here
    assert "failed" not in done.stdout


def test_gpu_wheels_are_pinned_to_this_environment():
    """The carried wheels are the versions the project runs here (a version there that differs would
    be an untested combination)."""
    from importlib.metadata import version

    pins = [line.split("==") for line in (ROOT / "tools" / "gpu_wheels.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert {name for name, _ in pins} >= {"qwen-vl-utils", "decord", "av", "segmentation_models_pytorch", "deepspeed"}
    for name, pinned in pins:
        assert version(name) == pinned, name


@pytest.mark.slow  # about a minute
def test_check_7b_runs_end_to_end_at_tiny_size(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_7b.py"), "--preset", "tiny", "--work",
                           str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [s["exit_status"] for s in result["steps"]] == [0] * 6 and result["reload"]["identical"]
    assert "untrained assessor: its scores mean nothing" in result["untrained_score_row"]["notes"]
    assert result["stage2_log"].startswith("step,") and len(result["stage2_log"].splitlines()) == 2
