"""`make demo`, the README's first command, end to end: it renders a small study, scores it with the
embedded checkpoint and prints predictions beside the study's MOS. A rerun replaces only a folder an
earlier demo wrote."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / ".installed").exists(),
                    reason="runs `make demo` in an installed checkout (make install first)")
def test_make_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run(["make", "-s", "demo", f"DEMO_OUT={out}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "[3/4] 20 scored, 0 failed" in done.stdout
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(r["error"] is None for r in rows)
    # The SRCC lines it prints are computed from those rows against the study's MOS.
    from lmmeval.data.manifest import load_manifest
    from lmmeval.eval.metrics import srcc

    records = load_manifest(out / "prepared" / "manifest.jsonl")
    by_id = {Path(r["path"]).stem: r for r in rows}
    for dim in ("quality", "authenticity"):
        value = srcc([by_id[r.id][dim] for r in records], [r.mos[dim] for r in records])
        assert f"SRCC {dim}: {value:+.3f} over 20 videos" in done.stdout
    assert len(list((out / "saliency").glob("*.overlay.gif"))) == 20
    # It ends with the study's report: one leaderboard row per generator, and where it is.
    assert f"report: {out / 'report' / 'index.html'}" in done.stdout
    import csv

    with open(out / "report" / "leaderboard.csv", newline="") as f:
        board = [row for row in csv.DictReader(f) if row["scores"] == "results"]
    assert sorted(row["group"] for row in board) == sorted({r.generator for r in records})  # the ten generators


def test_the_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    from lmmeval.demo import main

    (tmp_path / "mine.txt").write_text("a user's file")
    assert main(["--out", str(tmp_path)]) == 2
    assert "holds files the demo did not write" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "a user's file"


def test_a_rerun_replaces_an_earlier_demo_folder(tmp_path):
    from lmmeval.demo import MARKER, _claim

    out = tmp_path / "demo"
    _claim(out)
    assert (out / MARKER).is_file()
    (out / "results.jsonl").write_text("an earlier demo's results\n")
    _claim(out)  # the demo's own folder: replaced
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
