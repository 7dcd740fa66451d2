"""`lmmeval prepare` on malformed annotations stops with the file, line and field."""

import csv
import json
import os
import shutil

import pytest

from lmmeval.cli import main
from lmmeval.data.manifest import load_manifest


@pytest.fixture()
def raw(synthetic_raw, tmp_path):
    # Hard links: a private copy of the raw folder in milliseconds.
    return shutil.copytree(synthetic_raw, tmp_path / "raw", copy_function=os.link)


def _rewrite(path, transform):
    text = path.read_text()
    path.unlink()  # break the hard link before writing
    path.write_text(transform(text))


def _prepare_error(raw, tmp_path, capsys):
    assert main(["prepare", str(raw), str(tmp_path / "out"), "-q"]) == 2
    return capsys.readouterr().err


def _set_row(raw, line, **fields):
    def transform(text):
        rows = list(csv.DictReader(text.splitlines()))
        rows[line - 2].update(fields)
        header = "subject,video,dimension,rating\n"
        return header + "".join(f"{r['subject']},{r['video']},{r['dimension']},{r['rating']}\n" for r in rows)
    _rewrite(raw / "ratings.csv", transform)


def test_rating_outside_the_slider(raw, tmp_path, capsys):
    _set_row(raw, 7, rating="7.5")
    assert "ratings.csv, line 7: field 'rating' = '7.5' is outside" in _prepare_error(raw, tmp_path, capsys)


def test_unknown_dimension(raw, tmp_path, capsys):
    _set_row(raw, 12, dimension="beauty")
    assert "ratings.csv, line 12: field 'dimension' = 'beauty'" in _prepare_error(raw, tmp_path, capsys)


def test_subject_with_one_rating(raw, tmp_path, capsys):
    _rewrite(raw / "ratings.csv", lambda t: t + "S99,g01_0000,quality,3.0\n")
    err = _prepare_error(raw, tmp_path, capsys)
    assert "subject 'S99' has only one rating" in err and "ratings.csv" in err


def test_duplicate_rows(raw, tmp_path, capsys):
    _rewrite(raw / "ratings.csv", lambda t: t + t.splitlines()[1] + "\n")
    assert "duplicate rating for subject" in _prepare_error(raw, tmp_path, capsys)


def test_video_with_no_ratings(raw, tmp_path, capsys):
    _rewrite(raw / "ratings.csv", lambda t: "".join(line + "\n" for line in t.splitlines() if ",g02_0001," not in line))
    assert "g02_0001: missing from ratings.csv" in _prepare_error(raw, tmp_path, capsys)


def test_dots_outside_the_frame(raw, tmp_path, capsys):
    def transform(text):
        lines = text.splitlines()
        record = json.loads(lines[10])
        record["points"] = [[10.0, 500.0]]
        lines[10] = json.dumps(record)
        return "\n".join(lines) + "\n"
    _rewrite(raw / "marks.jsonl", transform)
    err = _prepare_error(raw, tmp_path, capsys)
    assert "marks.jsonl, line(s) [" in err and "11" in err and "field 'points'" in err and "outside the 112x112 frame" in err


def test_missing_description(raw, tmp_path, capsys):
    def transform(text):
        lines = text.splitlines()
        record = json.loads(lines[3])
        del record["description"]
        lines[3] = json.dumps(record)
        return "\n".join(lines) + "\n"
    _rewrite(raw / "marks.jsonl", transform)
    assert "marks.jsonl, line 4: missing field 'description'" in _prepare_error(raw, tmp_path, capsys)


def test_manifest_path_escaping_its_folder(prepared_manifest, tmp_path):
    lines = prepared_manifest.read_text().splitlines()
    record = json.loads(lines[2])
    record["views"]["0"]["saliency"] = "../../../secret.png"
    lines[2] = json.dumps(record)
    bad = tmp_path / "manifest.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 3: field 'views.0.saliency' = '../../../secret.png' points outside"):
        load_manifest(bad)


def test_non_numeric_view(raw, tmp_path, capsys):
    def transform(text):
        lines = text.splitlines()
        record = json.loads(lines[6])
        record["view"] = "left"
        lines[6] = json.dumps(record)
        return "\n".join(lines) + "\n"
    _rewrite(raw / "marks.jsonl", transform)
    assert "marks.jsonl, line 7: field 'view' must be a view angle in degrees, got 'left'" in _prepare_error(
        raw, tmp_path, capsys)
