"""The scripts for machines the test suite does not run on, run here at the tiny preset's size:
`make gpu-check` (tools/gpu_check.sh, for an H100/H200) and `make check-7b` (tools/check_7b.py,
the exact 7B shape on a 24 GB CPU machine). What they measure needs those machines; that they run
end to end, and write what they promise, is checked here; and that the wheels carried to the GPU
machine (tools/gpu_wheels.txt) are the versions the lock (requirements.lock) installs here."""

import importlib.metadata
import importlib.util
import json
import os
import re
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


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_wheels = _load_tool("gpu_wheels")
LOCK = ROOT / "requirements.lock"
GPU_LIST = ROOT / "tools" / "gpu_wheels.txt"


def assert_gpu_list_matches_lock(lock, gpu_list):
    """The carried wheels are the lock's versions, the ones the project is installed and tested with
    here (a version there that differs would be an untested combination). Read from the two files only:
    a release published since, or whatever happens to be installed, cannot change the verdict."""
    problems = gpu_wheels.drift(lock, gpu_list)
    assert not problems, "\n".join(problems)


def test_gpu_wheels_are_pinned_to_the_lock():
    assert set(gpu_wheels.read_pins(GPU_LIST)) >= {"qwen-vl-utils", "decord", "av", "segmentation-models-pytorch",
                                                   "deepspeed"}
    assert_gpu_list_matches_lock(LOCK, GPU_LIST)
    assert GPU_LIST.read_text() == gpu_wheels.render(LOCK), "edited by hand? run python tools/gpu_wheels.py"


def test_the_pin_verdict_ignores_newer_releases_in_the_environment(tmp_path, monkeypatch):
    """A fresh install that picked up a newer release of anything (here: every locked package at 999.0,
    as distribution metadata first on sys.path) leaves the pin test as it was."""
    site = tmp_path / "site-packages"
    for name in gpu_wheels.read_pins(LOCK):
        info = site / f"{name.replace('-', '_')}-999.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 999.0\n")
    monkeypatch.syspath_prepend(str(site))
    assert importlib.metadata.version("av") == importlib.metadata.version("deepspeed") == "999.0"
    test_gpu_wheels_are_pinned_to_the_lock()


PINS = gpu_wheels.read_pins(LOCK)


def _moved(text, name, version, to="99.0"):
    """The text with `name==version` (a lock's or the list's line) pinned to another version instead."""
    moved = re.sub(rf"^{re.escape(name)}=={re.escape(version)}\b", f"{name}=={to}", text, flags=re.MULTILINE)
    assert moved != text, f"{name}=={version} is not in the text"  # the edit took
    return moved


@pytest.mark.parametrize("change", ["the lock moves av", "the list moves deepspeed", "the list loses decord",
                                    "the list gains numpy"])
def test_the_pin_test_fails_when_the_lock_and_the_gpu_list_drift(tmp_path, change):
    lock_text, list_text = LOCK.read_text(), GPU_LIST.read_text()
    lock, gpu_list = tmp_path / "requirements.lock", tmp_path / "gpu_wheels.txt"
    if change == "the lock moves av":
        lock_text = _moved(lock_text, "av", PINS["av"])
        message = rf"av: 99\.0 in {re.escape(str(lock))}, {re.escape(PINS['av'])} in {re.escape(str(gpu_list))}"
    elif change == "the list moves deepspeed":
        list_text = _moved(list_text, "deepspeed", PINS["deepspeed"])
        message = rf"deepspeed: {re.escape(PINS['deepspeed'])} in .*requirements\.lock, 99\.0 in .*gpu_wheels\.txt"
    elif change == "the list loses decord":
        list_text = list_text.replace(f"decord=={PINS['decord']}\n", "")
        message = rf"decord: {re.escape(PINS['decord'])} in .*requirements\.lock, missing from .*gpu_wheels\.txt"
    else:
        list_text += f"numpy=={PINS['numpy']}\n"
        message = r"numpy: in .*gpu_wheels\.txt, not among the packages the GPU machine lacks"
    assert (lock_text, list_text) != (LOCK.read_text(), GPU_LIST.read_text())  # the edit took
    lock.write_text(lock_text)
    gpu_list.write_text(list_text)
    with pytest.raises(AssertionError, match=message):
        assert_gpu_list_matches_lock(lock, gpu_list)


def test_the_gpu_list_is_rewritten_from_a_moved_lock_and_refused_for_a_lock_without_a_carried_package(tmp_path):
    lock, gpu_list = tmp_path / "requirements.lock", tmp_path / "gpu_wheels.txt"
    lock.write_text(_moved(LOCK.read_text(), "av", PINS["av"]))
    gpu_list.write_text(GPU_LIST.read_text())
    assert gpu_wheels.main(["--check", "--lock", str(lock), "--out", str(gpu_list)]) == 1
    assert gpu_wheels.main(["--lock", str(lock), "--out", str(gpu_list)]) == 0
    assert gpu_wheels.read_pins(gpu_list)["av"] == "99.0" and gpu_wheels.drift(lock, gpu_list) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_wheels.txt", "requirements.lock"]  # no temporary left
    lock.write_text(LOCK.read_text().replace(f"\ndeepspeed=={PINS['deepspeed']} ", f"\nnot-deepspeed=={PINS['deepspeed']} "))
    with pytest.raises(ValueError, match=r"requirements\.lock: no pin for deepspeed"):
        gpu_wheels.render(lock)


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
