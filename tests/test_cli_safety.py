"""`lmmeval score` never destroys data and refuses mistakes before a model loads; folder search,
ids and the CSV; the CLI's contract (devices, stray launcher variables, negative axes, -q)."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmmeval.cli import main
from lmmeval.inference.inputs import collect_inputs

# Printed when the embedded demo checkpoint loads: its absence shows a refusal came before the model.
LOADED = "using the embedded demo checkpoint"


@pytest.fixture()
def media(synthetic_raw, tmp_path):
    """A video and an image to score, in a folder of their own."""
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(sorted((synthetic_raw / "videos").glob("*.mp4"))[0], root / "v.mp4")
    shutil.copy(sorted((synthetic_raw / "snapshots").glob("*.png"))[0], root / "x.png")
    return root


def _fails_before_loading(capsys, argv, message):
    """``argv`` exits 2 with one line matching ``message``, and no model was loaded."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert LOADED not in err and "Traceback" not in err
    return err


def test_an_existing_results_file_needs_resume_or_overwrite(media, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    rows = "".join(json.dumps({"id": f"v{i}.mp4", "path": f"/data/v{i}.mp4"}) + "\n" for i in range(40))
    out.write_text(rows)
    _fails_before_loading(capsys, ["score", str(media / "v.mp4"), "--out", str(out)],
                          "exists (an earlier run's results?): --resume continues it, --overwrite replaces it")
    assert out.read_text() == rows  # 40 rows, untouched
    _fails_before_loading(capsys, ["score", str(media / "v.mp4"), "--out", str(out), "--resume", "--overwrite"],
                          "give one")


def test_no_output_may_be_an_input_or_another_output(media, tmp_path, capsys):
    video, image = media / "v.mp4", media / "x.png"
    before = {p: p.read_bytes() for p in (video, image)}
    _fails_before_loading(capsys, ["score", str(video), str(image), "--out", str(video)],
                          f"--out {video} is one of the inputs")
    _fails_before_loading(capsys, ["score", str(video), str(image), "--out", str(tmp_path / "r.jsonl"),
                                   "--csv", str(image)], f"--csv {image} is one of the inputs")
    _fails_before_loading(capsys, ["score", str(video), "--out", str(tmp_path / "r.jsonl"),
                                   "--csv", str(tmp_path / "r.jsonl")], "are the same file")
    # A heat map written into the input folder for x.png would be x.png.saliency.png: not an input,
    # but an earlier run's map is not overwritten without asking.
    (media / "x.png.saliency.png").write_bytes(b"an earlier heat map")
    _fails_before_loading(capsys, ["score", str(image), "--out", str(tmp_path / "r.jsonl"), "--saliency-dir",
                                   str(media)], "heat map")
    assert {p: p.read_bytes() for p in (video, image)} == before
    assert not (tmp_path / "r.jsonl").exists()


def test_resume_refuses_a_file_of_notes_without_cutting_it(media, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, no final newline")
    _fails_before_loading(capsys, ["score", str(media), "--out", str(notes), "--resume"], "not a result row")
    assert notes.read_text() == "my notes, no final newline"


def test_missing_and_empty_inputs_are_one_line_before_loading(tmp_path, capsys):
    _fails_before_loading(capsys, ["score", str(tmp_path / "nope"), "--out", str(tmp_path / "r.jsonl")],
                          f"{tmp_path / 'nope'}: no such file or directory")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no faces here")
    _fails_before_loading(capsys, ["score", str(tmp_path / "empty"), "--out", str(tmp_path / "r.jsonl")],
                          "no inputs to score")
    assert not (tmp_path / "r.jsonl").exists()


def test_unusable_devices_and_stray_launcher_variables_are_one_line(media, tmp_path, capsys, monkeypatch):
    import torch

    argv = ["score", str(media), "--out", str(tmp_path / "r.jsonl")]
    _fails_before_loading(capsys, argv + ["--device", "bogus"], "--device bogus: not a torch device")
    if not torch.cuda.is_available():
        _fails_before_loading(capsys, argv + ["--device", "cuda"], "--device cuda: ")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    _fails_before_loading(capsys, argv, "WORLD_SIZE=2 is set but RANK is not")


def test_an_unwritable_output_folder_is_refused_before_loading(media, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    _fails_before_loading(capsys, ["score", str(media), "--out", str(blocker / "r.jsonl")],
                          f"cannot create the output folder {blocker}")


def test_a_negative_axis_parses_as_render_help_shows_it(tmp_path, capsys):
    """`--front -y` (the example in `render -h`) used to be "expected one argument"; now it reaches
    the command, which reports the missing asset."""
    _fails_before_loading(capsys, ["render", str(tmp_path / "head.glb"), "--out", str(tmp_path / "r"), "--up", "z",
                                   "--front", "-y"], "no such file or directory")
    from lmmeval.cli import _join_negative_axes, build_parser

    args = build_parser().parse_args(_join_negative_axes(["render", "h.glb", "--out", "r", "--front", "-y"]))
    assert args.front == "-y"


def test_render_refuses_to_replace_an_earlier_video(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from make_example_heads import main as make_heads

    make_heads([str(tmp_path / "heads")])
    head = sorted((tmp_path / "heads").glob("*.ply"))[0]
    out = tmp_path / "renders"
    out.mkdir()
    (out / f"{head.stem}.mp4").write_bytes(b"an earlier render")
    _fails_before_loading(capsys, ["render", str(head), "--out", str(out)],
                          "exists (an earlier render?): --resume skips finished assets, --overwrite")
    assert (out / f"{head.stem}.mp4").read_bytes() == b"an earlier render"


def test_evaluate_checks_its_report_folder_first(tmp_path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.json").write_text("{}")
    _fails_before_loading(capsys, ["evaluate", "--manifest", str(tmp_path / "m.jsonl"), "--out", str(report)],
                          "holds an earlier report (report.json): --overwrite replaces it")


# ---------------------------------------------------------------------------------------
# What a folder holds: inputs, and what lmmeval wrote there
# ---------------------------------------------------------------------------------------

def test_folder_search_skips_lmmeval_outputs_and_mesh_textures(tmp_path):
    root = tmp_path / "renders"
    (root / "maps").mkdir(parents=True)
    for name in ("a.mp4", "a_views.png", "b_views.png", "maps/a.mp4.saliency.png", "maps/a.mp4.overlay.gif",
                 "maps/x.png.mask.png", "c.png", "d.partial.mp4"):
        (root / name).write_bytes(b"x")
    (root / "v.mp4.mask").mkdir()
    (root / "v.mp4.mask" / "frame_000000.png").write_bytes(b"x")
    cache = root / "r.jsonl.renders"
    cache.mkdir()
    (cache / ".lmmeval-render-cache").write_text("")
    (cache / "head-0123.mp4").write_bytes(b"x")
    # A textured .obj: its texture is part of the mesh, not a face image.
    (root / "head.obj").write_text("mtllib head.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
                                   "usemtl skin\nf 1/1 2/2 3/3\n")
    (root / "head.mtl").write_text("newmtl skin\nmap_Kd skin.png\n")
    (root / "skin.png").write_bytes(b"x")
    found = collect_inputs([root])
    assert sorted(found.ids.values()) == ["a.mp4", "b_views.png", "c.png", "head.obj"]  # b has no b.mp4 beside it
    assert found.skipped == {"view strips beside rendered videos": 1, "heat maps, overlays and masks of earlier runs": 3,
                             "outputs of this or an earlier run": 1, "in render caches": 1,
                             "textures of meshes among the inputs": 1, "unfinished files of interrupted runs": 1}
    assert "skipped 8 file(s)" in found.skipped_note()
    # Globs narrow the set, matched against the path below the folder or the name.
    narrowed = collect_inputs([root], include=("*.mp4", "*.obj"), exclude=("head.*",))
    assert sorted(narrowed.ids.values()) == ["a.mp4"]
    assert narrowed.skipped["left out by --include/--exclude"] == 3
    # A file named on the command line is an input whatever its name.
    assert list(collect_inputs([root / "a_views.png"]).ids.values()) == ["a_views.png"]


def test_inputs_sharing_a_name_get_distinct_ids(tmp_path):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.png").write_bytes(b"x")
    found = collect_inputs([tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.png"])
    assert list(found.ids.values()) == ["d1/x.png", "d2/x.png"]


# ---------------------------------------------------------------------------------------
# Runs that load the model (the embedded demo checkpoint: it has out-of-distribution statistics)
# ---------------------------------------------------------------------------------------

def test_resume_ignores_rows_of_other_paths_and_the_csv_has_every_field(media, tmp_path, capsys):
    """A row for a path that is not among the inputs stays in the file but is not counted (it was
    counted, and kept, before); the CSV carries every scalar field of a row, the OOD flag and notes
    included; two inputs named x.png write two heat maps."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(media / "x.png", other / "x.png")
    out, table = tmp_path / "r.jsonl", tmp_path / "r.csv"
    foreign = json.dumps({"id": "shadow", "path": "/etc/shadow", "error": "planted"}) + "\n"
    out.write_text(foreign)
    rc = main(["score", str(media / "x.png"), str(other / "x.png"), str(media / "v.mp4"), "--out", str(out),
               "--resume", "--csv", str(table), "--saliency-dir", str(tmp_path / "maps"), "--device", "cpu", "-q"])
    assert rc == 0  # the planted failure is not this run's
    captured = capsys.readouterr()
    assert "3 inputs: 3 scored now" in captured.out and "holds 3 scored" in captured.out and "0 failed" in captured.out
    assert "1 row(s) for paths that are not among this run's inputs" in captured.err
    lines = out.read_text().splitlines()
    assert lines[0] == foreign.strip() and len(lines) == 4  # kept, first, untouched
    assert sorted(p.name for p in (tmp_path / "maps").rglob("*.saliency.png")) == \
        ["v.mp4.saliency.png", "x.png.saliency.png", "x.png.saliency.png"]
    with open(table) as f:
        records = list(csv.DictReader(f))
    assert len(records) == 3 and "/etc/shadow" not in {r["path"] for r in records}
    row = json.loads(lines[1])
    header = set(records[0])
    scalars = {k for k, v in row.items() if not isinstance(v, (dict, list))}
    assert scalars <= header and {"ood_score", "out_of_distribution", "notes", "distortions"} <= header
    assert {f"expected_level_{d}" for d in ("quality", "authenticity")} <= header
    assert {"uncertainty_quality_entropy", "p_quality_bad"} <= header
    by_id = {r["id"]: r for r in records}
    assert float(by_id[row["id"]]["ood_score"]) == pytest.approx(row["ood_score"])


@pytest.mark.slow
def test_quiet_run_prints_only_lmmeval_lines_and_the_first_errors(media, tmp_path):
    """-q: no transformers loading bar, no FutureWarning; the failed inputs are named on the terminal
    (the first few, then a count)."""
    for i in range(7):
        (media / f"broken{i}.mp4").write_bytes(b"not a video")
    env = {**os.environ, "PYTHONWARNINGS": ""}
    done = subprocess.run([sys.executable, "-m", "lmmeval.cli", "score", str(media), "--out", str(tmp_path / "r.jsonl"),
                           "--device", "cpu", "-q"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1
    assert "Loading weights" not in done.stderr and "Warning" not in done.stderr, done.stderr
    assert done.stderr.count("  failed: broken") == 5 and "... and 2 more" in done.stderr
    assert "holds 2 scored" in done.stdout and "and 7 failed" in done.stdout


def test_sigterm_whose_interrupt_was_swallowed_still_ends_as_interrupted(tmp_path, capsys, monkeypatch):
    """Python drops an exception raised while a finaliser runs ("Exception ignored in ..."); a SIGTERM
    that lands there must not let the command report success."""
    import signal
    import time

    import lmmeval.cli as cli

    def swallowing_command(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except KeyboardInterrupt:
            pass  # what a finaliser does with it
        return 0

    monkeypatch.setattr(cli, "_stats", swallowing_command)
    assert main(["stats", str(tmp_path / "manifest.jsonl")]) == 130
    assert "lmmeval stats: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not cli._terminate_as_interrupt  # handed back
