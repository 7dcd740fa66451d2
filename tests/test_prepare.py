"""`lmmeval prepare`: manifest contents checked against the simulator's ground truth."""

import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest

from lmmeval.data.saliency_maps import load_saliency_png
from lmmeval.cli import main
from lmmeval.labels import DISTORTIONS, score_to_level
from lmmeval.data.manifest import load_manifest
from lmmeval.data.prepare import PrepareConfig, prepare
from lmmeval.orbit import view_to_frame
from lmmeval.data.stats import learnability

from .conftest import SMALL_SET


@pytest.fixture(scope="module")
def records(prepared_manifest):
    return load_manifest(prepared_manifest)


@pytest.fixture(scope="module")
def truth(synthetic_raw):
    return {t["video"]: t for t in map(json.loads, open(synthetic_raw / "truth.jsonl"))}


def test_manifest_fields_and_relative_paths(prepared_manifest, records):
    assert len(records) == SMALL_SET["n"]
    for r in records:
        assert not r.video.startswith("/") and r.video_path.is_file()
        assert set(r.mos) == {"quality", "authenticity"}
        assert set(r.views) == {"-45", "0", "45"}
        for v in r.views.values():
            assert v.saliency_path.is_file()
    # The folder is self-contained: it can be moved and still loads.
    moved = prepared_manifest.parent.parent / "moved"
    shutil.copytree(prepared_manifest.parent, moved)
    assert load_manifest(moved / "manifest.jsonl")[0].video_path.is_relative_to(moved.resolve())
    # What is read back is what was written: each line is its record's to_json().
    lines = [json.loads(line) for line in prepared_manifest.read_text().splitlines()]
    assert [r.to_json() for r in records] == lines
    # The settings that made it travel with it (the saliency sigma is not in any record).
    summary = json.loads((prepared_manifest.parent / "summary.json").read_text())
    assert summary["prepare"] == {"folds": 5, "seed": 0, "min_votes": 1, "sigma": 5.0, "sweep_deg": 180.0}


def test_levels_follow_eq4_over_the_whole_set(records):
    for dim in ("quality", "authenticity"):
        expected = score_to_level([r.mos[dim] for r in records])
        assert [r.level[dim] for r in records] == expected


def test_folds_are_stratified_by_generator(records):
    sizes = Counter(r.fold for r in records)
    assert sorted(sizes) == [0, 1, 2, 3, 4] and max(sizes.values()) - min(sizes.values()) <= 1
    for gen in {r.generator for r in records}:
        videos = [r for r in records if r.generator == gen]
        folds = Counter(r.fold for r in videos)
        # 4 videos of each generator over 5 folds: never two in the same fold.
        assert max(folds.values()) == -(-len(videos) // 5)


def test_categories_match_the_applied_distortions(records, truth):
    exact = 0
    for r in records:
        applied = sorted({d["type"] for d in truth[r.id]["distortions"]}, key=DISTORTIONS.index) or ["No Distortion"]
        exact += r.categories == applied
    # Annotators miss faint distortions now and then, and the parser reads typos: most sets are exact.
    assert exact / len(records) >= 0.85


def test_saliency_maps_peak_at_the_marks(records):
    checked = 0
    for r in records:
        for view in r.views.values():
            smap = load_saliency_png(view.saliency_path)
            assert smap.shape == (112, 112) and smap.dtype == np.float32
            if view.fixations:
                assert smap.max() == pytest.approx(1.0, abs=1e-4)
                # The peak sits within a few sigma of some fixation.
                py, px = np.unravel_index(smap.argmax(), smap.shape)
                d = min(np.hypot(px - x, py - y) for x, y in view.fixations)
                assert d < 15
                checked += 1
            else:
                assert smap.max() == 0
    assert checked > 10


def test_a_manifest_of_an_earlier_version_still_loads(tmp_path, prepared_manifest):
    """Earlier versions of prepare also wrote each record's conversations (now built from
    lmmeval.prompts, the one source of questions and answers): such a line loads, the key unread.
    Any other unknown key is an error naming the line."""
    record = json.loads(prepared_manifest.read_text().splitlines()[0])
    old = tmp_path / "manifest.jsonl"
    old.write_text(json.dumps(record | {"conversations": [[{"role": "user"}, {"role": "assistant"}]]}) + "\n")
    shutil.copytree(prepared_manifest.parent / "videos", tmp_path / "videos")
    shutil.copytree(prepared_manifest.parent / "saliency", tmp_path / "saliency")
    assert load_manifest(old)[0].to_json() == record
    old.write_text(json.dumps(record | {"conversation": []}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: unknown field\(s\) \['conversation'\]"):
        load_manifest(old)


def test_view_to_frame_hand_worked():
    # 16 frames over -90..90 deg: frame k sits at -90 + 12k deg.
    assert view_to_frame(-90, 16) == 0 and view_to_frame(90, 16) == 15
    assert view_to_frame(-45, 16) == 4  # 45/180 * 15 = 3.75
    assert view_to_frame(0, 240) == 120  # 0.5 * 239 = 119.5 -> rounds to even
    with pytest.raises(ValueError, match="view 120 deg lies outside the 180.0 deg orbit"):
        view_to_frame(120, 16)


def test_the_synthetic_set_is_learnable(records, synthetic_raw):
    learnt = learnability(records, truth_path=synthetic_raw / "truth.jsonl")
    checks = learnt.checks
    # A hand-made blur statistic already ranks quality, and far less so authenticity.
    assert checks["srcc_sharpness_quality"] > 0.4
    assert checks["srcc_sharpness_quality"] > checks["srcc_sharpness_authenticity"] + 0.3
    # The MOS from the simulated raters reproduces the simulator's latent scores.
    assert checks["srcc_mos_latent_quality"] > 0.95 and checks["srcc_mos_latent_authenticity"] > 0.95
    # The per-generator means are the statistic's, one per generator present, apart from the checks.
    assert set(learnt.sharpness_by_generator) == {r.generator for r in records}
    assert not any(key.startswith("sharpness") for key in checks)


def test_manifest_path_escaping_its_folder_is_refused(tmp_path, prepared_manifest):
    record = json.loads(prepared_manifest.read_text().splitlines()[0])
    record["video"] = "../../etc/passwd"
    bad = tmp_path / "manifest.jsonl"
    bad.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'video'.*outside"):
        load_manifest(bad)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["mos"].pop("quality"), r"line 1: field 'mos.quality' must be a finite number, got None"),
    (lambda r: r["mos"].update(authenticity="high"), r"field 'mos.authenticity' must be a finite number, got 'high'"),
    (lambda r: r["level"].update(quality="great"), r"field 'level.quality' must be one of \['bad'.*got 'great'"),
    (lambda r: r.update(fold="1"), r"field 'fold' must be an integer, got '1'"),
    (lambda r: r.update(fps=0), r"field 'fps' must be a positive number, got 0"),
    (lambda r: next(iter(r["views"].values())).update(frame=99), r"field 'views\.-?\d+\.frame' must be a frame index in \[0, 16\), got 99"),
    (lambda r: r.update(categories="Eye Distortions"), r"field 'categories' must be a list"),
])
def test_malformed_manifest_fields_name_line_and_field(tmp_path, prepared_manifest, edit, message):
    record = json.loads(prepared_manifest.read_text().splitlines()[0])
    assert record["views"] and record["num_frames"] == 16  # the edits below need both
    edit(record)
    bad = tmp_path / "manifest.jsonl"
    bad.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=message):
        load_manifest(bad)


def test_raw_files_that_disagree_are_reported(tmp_path, synthetic_raw):
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    victim = sorted((raw / "videos").glob("*.mp4"))[0]
    victim.unlink()
    with pytest.raises(ValueError, match=rf"{victim.stem}: missing from videos/"):
        prepare(raw, tmp_path / "out", progress=False)


def test_marks_outside_the_frame_name_file_line_and_field(tmp_path, synthetic_raw):
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    lines = (raw / "marks.jsonl").read_text().splitlines()
    record = json.loads(lines[4])
    record["points"] = [[500.0, 3.0]]
    lines[4] = json.dumps(record)
    (raw / "marks.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"marks.jsonl, line\(s\) \[.*5.*\]: field 'points'"):
        prepare(raw, tmp_path / "out", progress=False)


def test_model_view_is_what_the_models_loader_gives_and_averages_away_detail_finer_than_the_budget(tmp_path):
    """A 1-px checkerboard is all edges at 112 px and a near-flat grey at a 28-px budget (the resize
    averages each 4 x 4 block); the view of an image is exactly the frame the model's loader makes of
    it at that budget; sides are multiples of the merged patch, aspect kept."""
    from PIL import Image

    from lmmeval.data.stats import model_view, sharpness
    from lmmeval.io.media import load_visual
    from lmmeval.model.configuration import SamplingConfig
    from lmmeval.model.presets import geometry

    y, x = np.mgrid[:112, :112]
    checker = np.repeat((((x + y) % 2) * 255).astype(np.uint8)[None, ..., None], 3, axis=-1)  # (1, 112, 112, 3)
    assert model_view(checker, 28).shape == (1, 28, 28, 3) and model_view(checker, 112) is checker
    assert sharpness(model_view(checker, 28)) < 0.01 * sharpness(checker)
    assert model_view(np.zeros((2, 56, 112, 3), np.uint8), 56).shape == (2, 28, 56, 3)  # 1:2 kept
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    sampling = SamplingConfig(max_pixels=112 * 112, min_pixels=56 * 56)
    loaded = load_visual(tmp_path / "photo.png", sampling, geometry("tiny")).frames[0]
    np.testing.assert_array_equal(model_view(photo[None], 112)[0], loaded)
    with pytest.raises(ValueError, match="at least 28 pixels"):
        model_view(checker, 20)


def test_cli_stats_at_a_models_input_size(prepared_manifest, capsys):
    assert main(["stats", str(prepared_manifest), "--input-size", "56"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("generator"))
    assert "as a model with a 56 x 56 pixel budget reads them" in out and header.split()[-1] == "sharpness"
    assert main(["stats", str(prepared_manifest), "--input-size", "4"]) == 2
    assert "input_size must be at least 28 pixels (one merged patch), got 4" in capsys.readouterr().err


def test_cli_prepare_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "ratings.csv: missing" in capsys.readouterr().err


def test_min_votes_is_validated():
    with pytest.raises(ValueError, match="min_votes"):
        PrepareConfig(min_votes=0)


def test_per_view_descriptions_all_count(tmp_path, synthetic_raw):
    """An annotator who describes the views differently: every description reaches the categories."""
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    lines = (raw / "marks.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    video = records[0]["video"]
    for r in records:
        if r["video"] == video and r["annotator"] == "A1":
            r["description"] = {-45: "looks fine", 0: "the left eye melts", 45: "looks fine"}[r["view"]]
    (raw / "marks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    record = next(r for r in load_manifest(prepare(raw, tmp_path / "out", progress=False)) if r.id == video)
    assert "Eye Distortions" in record.categories
    assert record.descriptions["A1"] == "looks fine / the left eye melts"


# ---------------------------------------------------------------------------------------------
# the output folder: never an input, never an earlier result unless asked, never half-written


def _snapshot(folder):
    """{relative path: bytes} of every file below ``folder`` (links followed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_refuses_an_output_folder_that_is_or_overlaps_the_raw_folder(tmp_path, synthetic_raw):
    """`prepare raw raw` once unlinked each raw video (the link's destination was its source):
    an output that is, lies inside or contains the raw folder is refused, naming both, and the raw
    files keep their bytes."""
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    before = _snapshot(raw)
    for out, relation in ((raw, "is"), (raw / "prepared", "lies inside"), (raw / "videos", "lies inside"),
                          (tmp_path, "contains")):
        with pytest.raises(ValueError, match=rf"output folder {re.escape(str(out))} {relation} the raw folder "
                                             rf"{re.escape(str(raw))}"):
            prepare(raw, out, progress=False, overwrite=True)
    assert _snapshot(raw) == before and sorted(p.name for p in raw.iterdir()) == sorted(
        p.name for p in synthetic_raw.iterdir())


def test_prepare_replaces_an_earlier_result_only_when_asked_and_only_once_complete(tmp_path, synthetic_raw):
    """A non-empty output folder is refused without overwrite. With it, a run that fails half-way
    (a bad mark on the last video, after the earlier videos' maps were drawn at another sigma) leaves
    the earlier result byte for byte and no temporary folder; a run that succeeds replaces it, its
    videos still hard links to the raw ones."""
    out = tmp_path / "out"
    prepare(synthetic_raw, out, progress=False)
    before = _snapshot(out)
    with pytest.raises(ValueError, match=rf"output folder {re.escape(str(out))} is not empty .*--overwrite"):
        prepare(synthetic_raw, out, PrepareConfig(sigma=3.0), progress=False)
    assert _snapshot(out) == before

    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    records = [json.loads(line) for line in (raw / "marks.jsonl").read_text().splitlines()]
    last = max(r["video"] for r in records)
    bad = next(i for i, r in enumerate(records) if r["video"] == last)
    records[bad]["points"] = [[500.0, 3.0]]
    (raw / "marks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=rf"line\(s\) \[.*{bad + 1}.*\]: field 'points'"):
        prepare(raw, out, PrepareConfig(sigma=3.0), progress=False, overwrite=True)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no temporary folder left

    prepare(synthetic_raw, out, PrepareConfig(sigma=3.0), progress=False, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["prepare"]["sigma"] == 3.0
    assert _snapshot(out) != before and sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
    for r in load_manifest(out / "manifest.jsonl"):
        assert r.video_path.samefile(synthetic_raw / "videos" / r.video_path.name)  # the hard link survived the rename
