"""`lmmeval score` on a folder with a broken file, CSV, saliency maps, resume after a torn line."""

import csv
import json
import shutil

import pytest

from lmmeval.cli import main


@pytest.fixture(scope="module")
def checkpoint(tiny_assessor, tmp_path_factory):
    return tiny_assessor.save_pretrained(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture()
def folder(synthetic_raw, tmp_path):
    root = tmp_path / "renders"
    (root / "sub").mkdir(parents=True)
    videos = sorted((synthetic_raw / "videos").glob("*.mp4"))[:2]
    shutil.copy(videos[0], root / videos[0].name)
    shutil.copy(videos[1], root / "sub" / videos[1].name)
    shutil.copy(sorted((synthetic_raw / "snapshots").glob("*.png"))[0], root / "still.png")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    (root / "readme.txt").write_text("not an input")  # not a media suffix: not collected
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_folder_with_broken_file(checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    rc = main(["score", str(folder), "--model", str(checkpoint), "--out", str(out), "--csv", str(tmp_path / "r.csv"),
               "--saliency-dir", str(tmp_path / "maps"), "--overlay", "--device", "cpu", "--workers", "2", "-q"])
    assert rc == 1  # something failed
    rows = {r["id"]: r for r in _rows(out)}
    assert set(rows) == {"broken.mp4", "still.png", "sub/" + next((folder / "sub").iterdir()).name,
                         next(folder.glob("g*.mp4")).name}
    assert "broken.mp4" in rows["broken.mp4"]["error"] and rows["broken.mp4"]["quality"] is None
    good = [r for r in rows.values() if r["error"] is None]
    assert len(good) == 3 and all(0 <= r["quality"] <= 100 and r["runtime_s"] > 0 for r in good)
    assert len(list((tmp_path / "maps").rglob("*.saliency.png"))) == 3
    assert len(list((tmp_path / "maps").rglob("*.overlay.gif"))) == 2  # the two videos
    with open(tmp_path / "r.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert "holds 3 scored (3 flagged low-confidence) and 1 failed" in capsys.readouterr().out  # untrained: flat levels


def test_resume_skips_done_inputs_and_drops_a_torn_line(checkpoint, folder, tmp_path):
    out = tmp_path / "results.jsonl"
    (folder / "broken.mp4").unlink()
    assert main(["score", str(folder), "--model", str(checkpoint), "--out", str(out), "-q"]) == 0
    lines = out.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    # Simulate a kill mid-write: the last line is cut in half.
    out.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert main(["score", str(folder), "--model", str(checkpoint), "--out", str(out), "--resume", "-q"]) == 0
    rows = _rows(out)
    assert len(rows) == 3 and len({r["path"] for r in rows}) == 3  # every input exactly once


def test_resume_refuses_a_file_that_is_not_a_results_file(tmp_path):
    """A complete line that is not a result row stops the resume with its line number; nothing is cut.
    A last line without its newline is cut only when it begins as a result row does: a file of
    notes without a final newline is refused whole, not truncated."""
    from lmmeval.inference.scoring import read_rows

    out = tmp_path / "notes.jsonl"
    a = '{"id": "a.mp4", "path": "a.mp4"}\n'
    text = a + 'some notes\n{"id": "b.mp4", "path": "b.mp4"}\n'
    out.write_text(text)
    with pytest.raises(ValueError, match=r"notes.jsonl:2: not a result row"):
        read_rows(out)
    assert out.read_text() == text
    out.write_text(a + '{"id": "b.mp4", "path": "b.m')  # torn last line: dropped
    assert read_rows(out) == {"a.mp4": {"id": "a.mp4", "path": "a.mp4"}} and out.read_text() == a
    out.write_text(a + '{"i')  # torn inside the row's first bytes: dropped too
    assert read_rows(out) == {"a.mp4": {"id": "a.mp4", "path": "a.mp4"}} and out.read_text() == a
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, no final newline")
    with pytest.raises(ValueError, match=r"notes.txt:1: not a result row of lmmeval score \(and no complete line\)"):
        read_rows(notes)
    assert notes.read_text() == "my notes, no final newline"


def test_score_help_explains(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["score", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--resume" in text and "Examples" in text and "exit status" in text
    # The input types it lists are the ones it reads (lmmeval.io.media, lmmeval.render.assets), not a
    # copy that can drift.
    from lmmeval.io.media import MEDIA_SUFFIXES
    from lmmeval.render.assets import MESH_SUFFIXES

    listed = " ".join(text.split()).split("searched recursively for ")[1].split(", which")[0]
    media, meshes = listed.split(", and 3D meshes ")
    assert media == ", ".join(s.lstrip(".") for s in MEDIA_SUFFIXES)
    assert meshes == ", ".join(s.lstrip(".") for s in MESH_SUFFIXES)


@pytest.mark.slow
def test_torchrun_shards_inputs_and_merges_one_output(checkpoint, synthetic_raw, tmp_path):
    """Two ranks (CPU, gloo) each score half of the inputs; rank 0 merges one complete file."""
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "renders"
    folder.mkdir()
    for i, src in enumerate(sorted((synthetic_raw / "videos").glob("*.mp4"))[:5]):
        shutil.copy(src, folder / f"v{i}.mp4")
    (folder / "broken.mp4").write_text("not a video")
    out = tmp_path / "r.jsonl"
    torchrun = Path(sys.executable).with_name("torchrun")
    # --standalone: torchrun binds a free port itself and holds it (no port picked here and closed again).
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2",
           "-m", "lmmeval.cli", "score", str(folder), "--model", str(checkpoint), "--out", str(out), "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0  # the broken input is reported as a failure
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["broken.mp4"] + [f"v{i}.mp4" for i in range(5)]  # input order, once each
    assert sum(r["error"] is not None for r in rows) == 1
    assert not list(tmp_path.glob("r.jsonl.rank*"))  # shards merged and removed
    assert "holds 5 scored" in done.stdout and "and 1 failed" in done.stdout


def test_resume_takes_failed_rows_out_of_the_file_to_score_them_again(tmp_path):
    from lmmeval.inference.scoring import file_counts, resume_rows

    out = tmp_path / "r.jsonl"
    rows = [{"path": "a", "error": None, "low_confidence": True}, {"path": "b", "error": "cannot decode"},
            {"path": "c", "error": None, "low_confidence": False}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out.write_text(text)
    assert file_counts(out) == (3, 1, 1, 0, 0)
    kept, dropped = resume_rows(out, keep_failed=True)
    assert set(kept) == {"a", "b", "c"} and dropped == 0 and out.read_text() == text
    kept, dropped = resume_rows(out)
    assert set(kept) == {"a", "c"} and dropped == 1
    assert out.read_text() == json.dumps(rows[0]) + "\n" + json.dumps(rows[2]) + "\n"
