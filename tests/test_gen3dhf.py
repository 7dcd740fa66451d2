"""Importing the published Gen3DHF release: a miniature release in exactly its layout (synthetic videos
renamed seedNNNN.mp4, label files in the published ms-swift format with foreign absolute paths and a
"None" level, side-by-side saliency maps, red-dot images), imported, trained on (stages 1-3, one step
each, tiny preset) and evaluated on the official eval split, all through the command line; and every
bad input named."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from lmmeval.cli import main
from lmmeval.data.gen3dhf import red_dot_fixations, stratified_folds
from lmmeval.data.manifest import load_manifest
from lmmeval.data.saliency_maps import load_saliency_png
from lmmeval.labels import DIMENSIONS, LEVELS, score_to_level
from lmmeval.prompts import QUESTIONS

N_VIDEOS, N_EVAL = 12, 4
VIEWS = ("-45", "0", "45")


def _answer(dim: str, level: str, mos: float) -> str:
    return f"The {dim} of the human face in this video is {level}. ({mos!r})"


def _record(dim: str, video: str, level: str, mos: float) -> dict:
    """One record as the release writes it: its own question, the answer with the MOS, a foreign path."""
    return {"messages": [{"role": "user", "content": "<video>" + QUESTIONS[dim]},
                         {"role": "assistant", "content": _answer(dim, level, mos)}],
            "videos": f"/home/someone/database/video_RGB/{video}.mp4"}


@pytest.fixture(scope="module")
def release(prepared_manifest, tmp_path_factory):
    """(root, labels dir, {video: source record}, {video: split}, {video: {view: dots}}) of a 12-video
    miniature release: 8 train, 4 eval; saliency maps (the three views side by side, 8-bit) for 6
    videos, 4 of them in train; red-dot images for 2 of them (5x5 dots at the annotators' marks, those
    at least 7 px from each other and 3 px inside their view)."""
    records = load_manifest(prepared_manifest)[:N_VIDEOS]
    root, labels = tmp_path_factory.mktemp("Gen3DHF"), tmp_path_factory.mktemp("numerical")
    (root / "video_RGB").mkdir()
    (root / "saliency_map").mkdir()
    (root / "red_dots").mkdir()
    ids = {f"seed{1000 + 7 * i:04d}": r for i, r in enumerate(records)}
    for video, r in ids.items():
        shutil.copy(r.video_path, root / "video_RGB" / f"{video}.mp4")
    split = {video: "eval" if i >= N_VIDEOS - N_EVAL else "train" for i, video in enumerate(ids)}
    for dim in DIMENSIONS:
        mos = {v: round(r.mos[dim] * 0.6 + 6.0, 13) for v, r in ids.items()}  # a 6-66 range, as published
        levels = dict(zip(mos, score_to_level(list(mos.values()))))
        levels[min(mos, key=mos.get)] = "None"  # the release labels its lowest video so
        for s in ("train", "eval"):
            rows = [_record(dim, v, levels[v], mos[v]) for v in ids if split[v] == s]
            (labels / f"{s}_{dim}.json").write_text(json.dumps(rows))
    for i, (video, r) in enumerate(ids.items()):
        if i % 2:  # maps for every other video
            continue
        views = [np.round(load_saliency_png(r.views[a].saliency_path) * 255).astype(np.uint8) for a in VIEWS]
        Image.fromarray(np.concatenate(views, axis=1)).save(root / "saliency_map" / f"{video}_saliency.png")
    dots = {}
    for video in list(ids)[:3:2]:  # red-dot images for the first two mapped videos
        image = np.full((112, 336, 3), 90, np.uint8)
        dots[video] = {}
        for k, a in enumerate(VIEWS):
            drawn = []
            for x, y in ids[video].views[a].fixations:
                x, y = int(round(x)), int(round(y))
                if 3 <= x <= 108 and 3 <= y <= 108 and all(max(abs(x - u), abs(y - v)) >= 7 for u, v in drawn):
                    drawn.append((x, y))
                    image[y - 2:y + 3, 112 * k + x - 2:112 * k + x + 3] = (255, 0, 0)
            dots[video][a] = sorted(drawn)
        Image.fromarray(image).save(root / "red_dots" / f"{video}.png")
    return root, labels, ids, split, dots


def test_import_keeps_the_published_labels_and_split(release, tmp_path, capsys):
    root, labels, ids, split, _ = release
    assert main(["import-gen3dhf", str(root), str(tmp_path / "out"), "--labels", str(labels), "-q"]) == 0
    out = capsys.readouterr().out
    assert "12 videos (4 eval, 8 train)" in out and "saliency maps: 6 matched, 6 videos without one" in out
    records = {r.id: r for r in load_manifest(tmp_path / "out" / "manifest.jsonl")}
    assert set(records) == set(ids)
    published = {}
    for s in ("train", "eval"):
        for dim in DIMENSIONS:
            for row in json.loads((labels / f"{s}_{dim}.json").read_text()):
                video = row["videos"].rsplit("/", 1)[1][:-4]
                level, mos = re.match(r".* is (\w+)\. \((.*)\)$", row["messages"][1]["content"]).groups()
                published[(video, dim)] = (level, float(mos))
    for video, r in records.items():
        assert r.split == split[video] and r.categories is None and not r.labelled
        assert (tmp_path / "out" / r.video).is_symlink() and r.video_path.is_file()
        for dim in DIMENSIONS:
            assert r.mos[dim] == published[(video, dim)][1]  # exactly as published
    # Levels: Eq. 4 over all videos; they differ from the published words only where those say "None".
    for dim in DIMENSIONS:
        assert [r.level[dim] for r in records.values()] == score_to_level([r.mos[dim] for r in records.values()])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for dim in DIMENSIONS:
        agreement = summary["level_words_eq4_vs_published"][dim]
        assert agreement["same"] == 11 and [d["published"] for d in agreement["differences"]] == ["None"]
        assert agreement["differences"][0]["eq4"] == "bad"
    # Folds: five, stratified by quality MOS, over all videos of both splits.
    assert sorted({r.fold for r in records.values()}) == [0, 1, 2, 3, 4]


def test_saliency_maps_split_into_their_views_at_the_orbit_frames(release, prepared_manifest, tmp_path):
    root, labels, ids, _, _ = release
    main(["import-gen3dhf", str(root), str(tmp_path / "out"), "--labels", str(labels), "-q"])
    records = load_manifest(tmp_path / "out" / "manifest.jsonl")
    mapped = [r for r in records if r.views]
    assert len(mapped) == 6
    for r in mapped:
        source = ids[r.id]
        assert list(r.views) == list(VIEWS)
        for angle, view in r.views.items():
            # The view is the source map (through 8 bits), at the frame prepare ties to that angle.
            expected = load_saliency_png(source.views[angle].saliency_path)
            got = load_saliency_png(view.saliency_path)
            assert got.shape == expected.shape and np.abs(got - expected).max() <= 1 / 255 + 1e-6
            assert view.frame == source.views[angle].frame
            # Fixations: the map thresholded at 0.95 (the authors' fixation maps).
            assert view.fixations == [[int(x), int(y)] for y, x in zip(*np.nonzero(got >= 0.95))]


def test_red_dots_give_the_dot_centroids(release, tmp_path):
    root, labels, ids, _, dots = release
    assert main(["import-gen3dhf", str(root), str(tmp_path / "out"), "--labels", str(labels),
                 "--red-dots", str(root / "red_dots"), "-q"]) == 0
    records = {r.id: r for r in load_manifest(tmp_path / "out" / "manifest.jsonl")}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["saliency"]
    assert summary["red_dot_images_matched"] == 2 and len(summary["fixations_from_maps"]) == 4
    assert sum(len(d) for views in dots.values() for d in views.values()) >= 4  # something to find
    for video, views in dots.items():
        for angle, drawn in views.items():
            # Each 5x5 dot's centroid is its centre, in the frame's pixels (map view = frame size here).
            assert sorted(tuple(p) for p in records[video].views[angle].fixations) == [(x, y) for x, y in drawn]


def test_red_dot_blobs_hand_worked(tmp_path):
    """Two views of 10x10; a 5x5 red square centred at (2, 7) in the left view and one at (14, 4) in the
    right; a 2x2 red speck (4 px, under the 20 px minimum) and a dull red square (low value) ignored."""
    image = np.zeros((10, 20, 3), np.uint8)
    image[5:10, 0:5] = (250, 10, 10)  # rows 5-9, cols 0-4: centroid (2, 7)
    image[2:7, 12:17] = (255, 0, 0)  # centroid (14, 4) -> x 4 in the right view
    image[0:2, 8:10] = (255, 0, 0)  # too small
    image[0:5, 5:8] = (120, 0, 0)  # too dark: not a marker red
    path = tmp_path / "dots.png"
    Image.fromarray(image).save(path)
    assert red_dot_fixations(path, 2, (20, 20)) == [[[4.0, 14.0]], [[8.0, 8.0]]]  # scaled to 20x20 frames


def test_folds_are_stratified_by_mos():
    """10 videos, 5 folds: each run of five consecutive MOS ranks gives every fold one video."""
    mos = {f"v{i}": float(i) for i in range(10)}
    folds = stratified_folds(mos, 5, seed=3)
    for block in (range(5), range(5, 10)):
        assert sorted(folds[f"v{i}"] for i in block) == [0, 1, 2, 3, 4]
    assert folds == stratified_folds(mos, 5, seed=3) and folds != stratified_folds(mos, 5, seed=4)


@pytest.mark.slow  # three training stages and an evaluation through the command line: ~40 s on 2 cores
def test_import_train_and_evaluate_on_the_official_split(release, tmp_path, capsys):
    """Import, the three stages (tiny preset, one step each) on the train split, `lmmeval evaluate` on
    the eval split: all through the command line."""
    from pathlib import Path

    from lmmeval.training.cli import stage_main

    root, labels, _, _, _ = release
    out = tmp_path / "gen3dhf"
    assert main(["import-gen3dhf", str(root), str(out), "--labels", str(labels), "--copy", "-q"]) == 0
    manifest = out / "manifest.jsonl"
    configs = Path(__file__).resolve().parents[1] / "configs" / "tiny"
    final = None
    for stage in (1, 2, 3):
        sets = [f"manifest={manifest}", f"output_dir={tmp_path / f's{stage}'}", "split=eval", "steps=1",
                "batch_size=2", "warmup_steps=0", "save_every=1"]
        sets += [f"init_from={final}"] if final else []
        assert stage_main(stage, "test", ["--config", str(configs / f"stage{stage}.yaml"), "--set", *sets]) == 0
        final = tmp_path / f"s{stage}" / "final"
    printed = capsys.readouterr().out
    # No record has labelled distortions: stage 1 does not ask about them; stage 3 trains on the mapped ones.
    assert "stage 1: no training record has labelled distortion categories" in printed
    assert "stage 3: 4 of 8 training records have no saliency maps (views) and are left out" in printed
    report = tmp_path / "report"
    assert main(["evaluate", "--model", str(final), "--manifest", str(manifest), "--split", "eval", "--out",
                 str(report), "--device", "cpu"]) == 0
    data = json.loads((report / "report.json").read_text())
    assert data["n"] == N_EVAL and data["distortions"] == {"exact_set_accuracy": None, "per_category": {},
                                                           "not_labelled": N_EVAL}
    assert "Distortion categories: not labelled (4 videos)" in (report / "report.md").read_text()
    assert "on split eval" in (report / "report.md").read_text()
    assert data["saliency"]["views"] > 0  # two eval videos have maps


# ---------------------------------------------------------------------------------------------
# bad input: each error names the culprit


def _copy(release, tmp_path):
    root, labels, _, _, _ = release
    new_root, new_labels = tmp_path / "root", tmp_path / "labels"
    shutil.copytree(root, new_root)
    shutil.copytree(labels, new_labels)
    return new_root, new_labels


def _rows(labels, name):
    return json.loads((labels / name).read_text())


def _set_answer(labels, name, index, content):
    """Replace the assistant answer of record ``index`` of label file ``name``."""
    rows = _rows(labels, name)
    rows[index]["messages"][1]["content"] = content
    (labels / name).write_text(json.dumps(rows))


def _error(root, labels, tmp_path, capsys, *extra) -> str:
    assert main(["import-gen3dhf", str(root), str(tmp_path / "out"), "--labels", str(labels), "-q", *extra]) == 2
    return capsys.readouterr().err


def test_missing_videos_are_all_listed_or_skipped_on_request(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    gone = sorted(p.stem for p in (root / "video_RGB").iterdir())[:2]
    for video in gone:
        (root / "video_RGB" / f"{video}.mp4").unlink()
    err = _error(root, labels, tmp_path, capsys)
    assert f"2 video(s) the labels name are missing: {gone[0]}, {gone[1]}" in err and "--allow-missing" in err
    assert main(["import-gen3dhf", str(root), str(tmp_path / "out"), "--labels", str(labels), "--allow-missing",
                 "-q"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["missing_videos"] == gone and summary["videos"] == N_VIDEOS - 2


def test_a_video_in_both_splits(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    rows = _rows(labels, "eval_quality.json")
    rows.append(_rows(labels, "train_quality.json")[3])
    (labels / "eval_quality.json").write_text(json.dumps(rows))
    err = _error(root, labels, tmp_path, capsys)
    assert re.search(r"eval_quality\.json, record 4: video seed\d{4} is in both splits", err), err


def test_a_video_labelled_twice(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    rows = _rows(labels, "train_authenticity.json")
    (labels / "train_authenticity.json").write_text(json.dumps(rows + [rows[1]]))
    err = _error(root, labels, tmp_path, capsys)
    assert re.search(r"train_authenticity\.json, record 8: video seed\d{4} is labelled again "
                     r"\(.*train_authenticity\.json, record 1 labels it too\)", err), err


def test_a_video_in_one_dimension_only(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    rows = _rows(labels, "train_authenticity.json")
    (labels / "train_authenticity.json").write_text(json.dumps(rows[1:]))
    video = rows[0]["videos"].rsplit("/", 1)[1][:-4]
    err = _error(root, labels, tmp_path, capsys)
    assert f"1 video(s) labelled in one dimension only: {video} (" in err and "train_quality.json, record 0" in err


def test_an_answer_without_a_number(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    _set_answer(labels, "eval_quality.json", 2, "The quality of the human face in this video is good. (n/a)")
    err = _error(root, labels, tmp_path, capsys)
    assert "eval_quality.json, record 2: answer 'The quality of the human face in this video is good. (n/a)' " \
           "has no parsable MOS number" in err
    _set_answer(labels, "eval_quality.json", 2, "Good.")
    assert "eval_quality.json, record 2: answer 'Good.' is not" in _error(root, labels, tmp_path, capsys)


def test_an_unexpected_or_missing_label_file(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    (labels / "train_quality_v2.json").write_text("[]")
    assert f"{labels}: unexpected file(s) ['train_quality_v2.json']" in _error(root, labels, tmp_path, capsys)
    (labels / "train_quality_v2.json").unlink()
    (labels / "eval_authenticity.json").unlink()
    assert f"{labels}: missing ['eval_authenticity.json']" in _error(root, labels, tmp_path, capsys)


def test_a_release_without_video_RGB(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    shutil.rmtree(root / "video_RGB")
    assert f"{root / 'video_RGB'}: no such folder" in _error(root, labels, tmp_path, capsys)


def test_two_maps_for_one_video_and_a_bad_pattern(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    first = sorted((root / "saliency_map").iterdir())[0]
    shutil.copy(first, first.with_name(first.stem.split("_")[0] + "_copy.png"))
    assert "two saliency maps for seed" in _error(root, labels, tmp_path, capsys)
    assert "needs a named group (?P<id>...)" in _error(root, labels, tmp_path, capsys, "--saliency-pattern", "seed\\d+")
    # The pattern picks one of the two.
    assert main(["import-gen3dhf", str(root), str(tmp_path / "out"), "--labels", str(labels), "-q",
                 "--saliency-pattern", r"^(?P<id>seed\d{4})_saliency\.png$"]) == 0


def test_levels_in_the_labels_must_be_known_words(release, tmp_path, capsys):
    root, labels = _copy(release, tmp_path)
    _set_answer(labels, "train_quality.json", 0, "The quality of the human face in this video is superb. (40.0)")
    err = _error(root, labels, tmp_path, capsys)
    assert f"train_quality.json, record 0: level word 'superb' is not one of {list(LEVELS)} or 'None'" in err


# ---------------------------------------------------------------------------------------------
# the output folder: never an input, never an earlier result unless asked, never half-written


def _snapshot(folder):
    """{relative path: (link target or None, bytes)} of every file below ``folder``."""
    return {str(p.relative_to(folder)): (str(p.readlink()) if p.is_symlink() else None, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _bomb_png(path):
    """A PNG whose header declares 30000 x 30000 pixels (no pixel data): Pillow refuses it on opening
    with its DecompressionBombError, which is not an OSError."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_import_refuses_an_output_folder_that_is_or_overlaps_its_inputs(release, tmp_path):
    from lmmeval.data.gen3dhf import import_gen3dhf

    root, labels = _copy(release, tmp_path)
    before = _snapshot(root), _snapshot(labels)
    for out, relation, what, folder in ((root, "is", "release", root), (root / "out", "lies inside", "release", root),
                                        (labels, "is", "labels", labels), (tmp_path, "contains", "release", root)):
        with pytest.raises(ValueError, match=rf"output folder {re.escape(str(out))} {relation} the {what} folder "
                                             rf"{re.escape(str(folder))}"):
            import_gen3dhf(root, out, labels, progress=False, overwrite=True)
    assert (_snapshot(root), _snapshot(labels)) == before


def test_a_failed_reimport_leaves_the_earlier_import_untouched(release, tmp_path, capsys):
    """A rerun into an earlier import is refused without --overwrite; with it, a saliency map that
    cannot be decoded (a PNG declaring 30000 x 30000 pixels, met after other maps were split in
    another view order) is a clear error naming the file, and the earlier manifest, maps and links
    are left as they were, with no temporary folder beside them."""
    root, labels = _copy(release, tmp_path)
    out = tmp_path / "out"
    assert main(["import-gen3dhf", str(root), str(out), "--labels", str(labels), "-q"]) == 0
    before = _snapshot(out)
    from lmmeval.data.gen3dhf import ImportConfig, import_gen3dhf

    with pytest.raises(ValueError, match=rf"output folder {re.escape(str(out))} is not empty"):
        import_gen3dhf(root, out, labels, progress=False)
    last = sorted((root / "saliency_map").iterdir())[-1]
    _bomb_png(last)
    reordered = ImportConfig(view_order=("45", "0", "-45"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(last))}: cannot decode the saliency map "
                                         r"\(DecompressionBombError"):
        import_gen3dhf(root, out, labels, reordered, progress=False, overwrite=True)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "out", "root"]
    last.unlink()  # without it, the rerun replaces the earlier import
    import_gen3dhf(root, out, labels, reordered, progress=False, overwrite=True)
    records = load_manifest(out / "manifest.jsonl")
    assert all(list(r.views) == ["45", "0", "-45"] for r in records if r.views)
    assert all((out / r.video).is_symlink() and r.video_path.is_file() for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "out", "root"]


def test_view_order_and_seed(release, tmp_path):
    """--view-order names a map's panels left to right: reversed, the left panel (the source's -45
    degree view) becomes the +45 view. --seed deals other folds."""
    root, labels, ids, _, _ = release
    assert main(["import-gen3dhf", str(root), str(tmp_path / "a"), "--labels", str(labels), "-q"]) == 0
    assert main(["import-gen3dhf", str(root), str(tmp_path / "b"), "--labels", str(labels), "--view-order", "45", "0",
                 "-45", "--seed", "3", "-q"]) == 0
    a = {r.id: r for r in load_manifest(tmp_path / "a" / "manifest.jsonl")}
    b = {r.id: r for r in load_manifest(tmp_path / "b" / "manifest.jsonl")}
    mapped = [v for v in a if a[v].views]
    for video in mapped:
        left_panel = load_saliency_png(a[video].views[VIEWS[0]].saliency_path)
        assert np.array_equal(load_saliency_png(b[video].views[VIEWS[-1]].saliency_path), left_panel)
    assert [b[v].fold for v in a] != [a[v].fold for v in a]
