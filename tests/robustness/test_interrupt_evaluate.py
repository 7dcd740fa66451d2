"""Ctrl-C and SIGTERM stop `lmmeval evaluate` within seconds, and leave no report that looks complete."""

import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_evaluate_stops_on_a_signal_and_writes_no_report(prepared_manifest, tmp_path, sig):
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "lmmeval.cli", "evaluate", "--manifest", str(prepared_manifest), "--fold", "-1",
           "--out", str(out), "--batch-size", "1", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Evaluation has begun once its progress bar is drawn (40 videos, one at a time: tens of seconds).
        started = time.monotonic()
        seen = ""
        while "evaluating" not in seen:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() - started < 300, "never started evaluating"
            seen += proc.stderr.read(1)
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=60)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert proc.returncode == 130 and "lmmeval evaluate: interrupted" in err, err[-2000:]
    # Within seconds: one batch of one video finishes at most (a few seconds on 2 loaded cores).
    assert stopped < 20, f"took {stopped:.1f} s to stop"
    assert not (out / "report.json").exists() and not (out / "report.md").exists()
