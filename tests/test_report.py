"""`lmmeval report`: the leaderboard's statistics against independent references (scipy, hand-worked
cases, a coverage simulation), the reading of results/manifests/groups with their errors, and the
files a report writes."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sstats

from lmmeval.report import command
from lmmeval.report.agreement import input_correlations, rank_agreement
from lmmeval.report.build import build_report
from lmmeval.report.ranking import leaderboard
from lmmeval.report.stats import (holm, kendall_tau_b_rows, mean_ci, mean_difference_p, ranks, rng_for,
                                  spearman_rows)
from lmmeval.report.write import write_report


# ---------------------------------------------------------------------------------------
# A small study on disk, as `lmmeval synth`, `prepare` and `score` lay it out
# ---------------------------------------------------------------------------------------

def result_row(path: Path, quality, authenticity, error=None, ood=False, low=False, distortions=("Eye Distortions",)):
    failed = error is not None
    return {"id": path.name, "path": str(path.resolve()), "quality": None if failed else quality,
            "authenticity": None if failed else authenticity, "quality_level": None if failed else "fair",
            "authenticity_level": None if failed else "good", "distortions": [] if failed else list(distortions),
            "description": None, "ood_score": None, "out_of_distribution": None if failed else ood, "notes": [],
            "error": error, "runtime_s": 0.1, "low_confidence": low}


def make_study(root: Path, scores: dict[str, list[tuple[float, float]]], mos_shift: float = 0.0,
               failed: tuple[str, ...] = (), ood: tuple[str, ...] = (), snapshots: bool = True) -> dict:
    """raw/videos (placeholder files), raw/snapshots (small PNGs), prepared/manifest.jsonl (MOS = score +
    shift + a little per-input noise) and results.jsonl; ``scores``: {generator: [(quality, authenticity)]}.
    Input ids are <generator>_<k>; ``failed``/``ood`` name inputs to mark."""
    raw, prepared = root / "raw", root / "prepared"
    (raw / "videos").mkdir(parents=True)
    (raw / "snapshots").mkdir()
    prepared.mkdir()
    rng = np.random.default_rng(0)
    rows, records = [], []
    for g, values in scores.items():
        for k, (q, a) in enumerate(values):
            vid = f"{g}_{k}"
            video = raw / "videos" / f"{vid}.mp4"
            video.write_bytes(b"not decoded: the snapshots are the pictures")
            if snapshots:
                for view, shade in (("-45", 60), ("0", 120), ("45", 180)):
                    Image.new("RGB", (40, 40), (shade, 90, 200 - shade)).save(raw / "snapshots" / f"{vid}_{view}.png")
            rows.append(result_row(video, q, a, error="decoding failed" if vid in failed else None, ood=vid in ood,
                                   distortions=("Eye Distortions",) if k % 2 else ("No Distortion",)))
            noise = rng.normal(0, 1, 2)
            records.append({"id": vid, "video": f"videos/{vid}.mp4", "generator": g, "fold": k % 2,
                            "mos": {"quality": q + mos_shift + noise[0], "authenticity": a + mos_shift + noise[1]},
                            "level": {"quality": "fair", "authenticity": "fair"},
                            "categories": ["Eye Distortions"] if k % 2 else ["No Distortion"]})
    results = root / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = prepared / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"results": results, "manifest": manifest, "rows": rows, "records": records}


THREE_GENERATORS = {"G1": [(70, 60), (74, 62), (78, 66), (72, 64)],
                    "G2": [(40, 50), (45, 52), (38, 47), (44, 55)],
                    "G3": [(55, 30), (58, 35), (60, 33), (52, 31)]}


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lmmeval")
    command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["report", *argv])


# ---------------------------------------------------------------------------------------
# Statistics against independent references
# ---------------------------------------------------------------------------------------

def test_group_means_and_rank_correlations_agree_with_numpy_and_scipy():
    rng = np.random.default_rng(3)
    rows, groups = [], []
    for g in range(6):
        for k in range(int(rng.integers(3, 9))):
            q, a = rng.uniform(0, 100, 2)
            rows.append({"id": f"{g}_{k}", "path": f"/x/{g}_{k}.mp4", "quality": q, "authenticity": a, "error": None})
            groups.append(f"gen{g}")
    board = leaderboard(rows, groups, bootstrap=200)
    for e in board.entries:
        mine = [r for r, g in zip(rows, groups) if g == e.group]
        assert e.scores["quality"].mean == pytest.approx(np.mean([r["quality"] for r in mine]))
        assert e.scores["authenticity"].mean == pytest.approx(np.mean([r["authenticity"] for r in mine]))
    means = [e.scores["quality"].mean for e in board.entries]
    assert means == sorted(means, reverse=True)
    assert [e.scores["quality"].rank for e in board.entries] == list(range(1, 7))

    # Rank agreement over groups: scipy's Kendall tau-b and Spearman on the group means.
    pairs = {f"gen{g}": [(float(x), float(x + rng.normal(0, 15))) for x in rng.uniform(0, 100, 5)] for g in range(6)}
    agreement = rank_agreement(pairs, "quality", bootstrap=300, seed=0)
    metric = [np.mean([p[0] for p in pairs[g]]) for g in sorted(pairs)]
    human = [np.mean([p[1] for p in pairs[g]]) for g in sorted(pairs)]
    assert agreement.kendall_tau == pytest.approx(sstats.kendalltau(metric, human).statistic)
    assert agreement.srcc == pytest.approx(sstats.spearmanr(metric, human).statistic)
    assert agreement.kendall_ci[0] <= agreement.kendall_tau <= agreement.kendall_ci[1]

    # The vectorised bootstrap versions, row by row, ties included.
    x = rng.integers(0, 5, size=(50, 7)).astype(float)
    y = rng.integers(0, 5, size=(50, 7)).astype(float)
    keep = [i for i in range(50) if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0]
    np.testing.assert_allclose(spearman_rows(x, y)[keep], [sstats.spearmanr(x[i], y[i]).statistic for i in keep])
    np.testing.assert_allclose(kendall_tau_b_rows(x, y)[keep],
                               [sstats.kendalltau(x[i], y[i], variant="b").statistic for i in keep])

    # Per-input correlations.
    pred, mos = rng.uniform(0, 100, 40), rng.uniform(0, 100, 40)
    c = input_correlations(list(pred), list(mos), "quality")
    assert c.srcc == pytest.approx(sstats.spearmanr(pred, mos).statistic)
    assert c.krcc == pytest.approx(sstats.kendalltau(pred, mos).statistic)
    assert c.plcc_raw == pytest.approx(sstats.pearsonr(pred, mos).statistic)


def test_bootstrap_interval_is_reproducible_and_covers_the_mean_at_about_its_nominal_rate():
    sample = np.random.default_rng(0).normal(50, 10, 30)
    assert mean_ci(sample, 1000, rng_for(7, "g")) == mean_ci(sample, 1000, rng_for(7, "g"))
    assert mean_ci(sample, 1000, rng_for(7, "g")) != mean_ci(sample, 1000, rng_for(8, "g"))
    assert mean_ci(sample[:1], 1000, rng_for(7, "g")) is None  # one value: no interval
    # Coverage: 200 samples of n = 30 from N(50, 10). The percentile bootstrap's 95 % interval is a
    # little narrow at n = 30 (about 93-94 % in theory); with 200 repetitions the binomial standard
    # error of the rate is 1.6 points, so [0.90, 0.99] admits the nominal rate and rejects an interval
    # that is too narrow (e.g. the standard error's 1.0 multiplier: ~68 %) or too wide (e.g. the
    # quantiles of the values instead of the means: ~100 %).
    rng = np.random.default_rng(1)
    covered = 0
    for rep in range(200):
        lo, hi = mean_ci(rng.normal(50, 10, 30), 1000, rng_for(rep, "coverage"))
        covered += lo <= 50 <= hi
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_holm_on_a_hand_worked_case():
    # p = (0.01, 0.04, 0.03, 0.005), m = 4. Ascending: 0.005, 0.01, 0.03, 0.04, multiplied by
    # 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04; running maximum: 0.02, 0.03, 0.06, 0.06. Back in the
    # given order: 0.03, 0.06, 0.06, 0.02 (Bonferroni would give 0.04, 0.16, 0.12, 0.02).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        holm([0.2, 1.5])


def test_mean_difference_p_exact_by_hand_and_t_test_for_large_groups():
    # Unpaired [1, 2] vs [3, 4]: the 6 splits of {1, 2, 3, 4} into two pairs give differences of means
    # -2, -1, 0, 0, 1, 2; |d| >= 2 for 2 of them: p = 2/6.
    assert mean_difference_p([1, 2], [3, 4], paired=False) == pytest.approx(1 / 3)
    # Paired differences 1, 1.5, 2 (mean 1.5): of the 8 sign flips only +++ and --- reach |mean| 1.5: 2/8.
    assert mean_difference_p([1, 2, 3], [0, 0.5, 1], paired=True) == pytest.approx(0.25)
    # Fully separated groups of 5: the observed split and its mirror of C(10, 5) = 252: p = 2/252.
    assert mean_difference_p([11, 12, 13, 14, 15], [1, 2, 3, 4, 5], paired=False) == pytest.approx(2 / 252)
    rng = np.random.default_rng(2)
    a, b = rng.normal(50, 10, 40), rng.normal(55, 20, 25)
    assert mean_difference_p(a, b, paired=False) == pytest.approx(sstats.ttest_ind(a, b, equal_var=False).pvalue)
    c = a + rng.normal(1, 2, 40)
    assert mean_difference_p(a, c, paired=True) == pytest.approx(sstats.ttest_rel(a, c).pvalue)


def test_ranks_share_ties_and_skip_missing():
    assert ranks([5.0, 7.0, 5.0, None, 1.0]) == [2, 1, 2, None, 4]


# ---------------------------------------------------------------------------------------
# The leaderboard on hand-made rows
# ---------------------------------------------------------------------------------------

def _rows(values: dict[str, list], **flags) -> tuple[list[dict], list[str]]:
    rows, groups = [], []
    for g, vs in values.items():
        for k, v in enumerate(vs):
            rows.append({"id": f"{g}{k}", "path": f"/in/{g}{k}.mp4", "quality": v, "authenticity": v,
                         "error": None, **flags.get(f"{g}{k}", {})})
            groups.append(g)
    return rows, groups


def test_leaderboard_on_a_tiny_hand_made_case():
    # A = 11..15, B = 1..5, C = 6..10: every pair fully separated, so each exact two-sided p is
    # 2/252 = 0.00794; Holm over the 3 pairs: 3 x 0.00794 = 0.0238 for the smallest and (running
    # maximum) the same for the others: all significant at 0.05. Means 13, 3, 8.
    rows, groups = _rows({"A": [11, 12, 13, 14, 15], "B": [1, 2, 3, 4, 5], "C": [6, 7, 8, 9, 10]})
    board = leaderboard(rows, groups, bootstrap=500, seed=1)
    assert board.groups == ["A", "C", "B"]
    a, c, b = board.entries
    assert (a.scores["quality"].mean, c.scores["quality"].mean, b.scores["quality"].mean) == (13, 8, 3)
    assert [e.scores["quality"].rank for e in board.entries] == [1, 2, 3]
    assert a.scores["quality"].above == ("C", "B") and c.scores["quality"].above == ("B",)
    assert b.scores["quality"].above == ()
    tests = [t for t in board.comparisons if t.dimension == "quality"]
    assert len(tests) == 3 and not any(t.paired for t in tests)
    assert all(t.p == pytest.approx(2 / 252) and t.p_holm == pytest.approx(3 * 2 / 252) for t in tests)
    assert all(s.ci_low < s.mean < s.ci_high for s in (e.scores["quality"] for e in board.entries))
    # Groups of 4: p = 2/70 = 0.0286 each, Holm 3 x 0.0286 = 0.086: nothing significant.
    rows, groups = _rows({"A": [11, 12, 13, 14], "B": [1, 2, 3, 4], "C": [6, 7, 8, 9]})
    board = leaderboard(rows, groups, bootstrap=500)
    assert all(t.p == pytest.approx(2 / 70) and not t.significant for t in board.comparisons)
    assert all(e.scores["quality"].above == () for e in board.entries)


def test_failed_and_out_of_distribution_rows_are_counted_and_left_out():
    rows, groups = _rows({"A": [60, 70, 80, 0, 99], "B": [10, 20, 30]},
                         A3={"out_of_distribution": True}, A4={"error": "decoding failed", "quality": None,
                                                                "authenticity": None},
                         B2={"low_confidence": True})
    board = leaderboard(rows, groups, bootstrap=200)
    a = board.entry("A")
    assert (a.inputs, a.used, a.failed, a.out_of_distribution) == (5, 3, 1, 1)
    assert a.scores["quality"].mean == pytest.approx(70)
    assert board.entry("B").low_confidence == 1 and board.entry("B").scores["quality"].mean == pytest.approx(20)
    kept = leaderboard(rows, groups, bootstrap=200, include_ood=True).entry("A")
    assert (kept.used, kept.failed) == (4, 1) and kept.scores["quality"].mean == pytest.approx(52.5)


def test_two_results_files_of_the_same_inputs_are_compared_paired(tmp_path):
    # The second file scores every input 1 point lower (plus a little noise): a shift far below
    # the inputs' spread (sd ~ 20), which only a paired test can see.
    rng = np.random.default_rng(5)
    base = rng.uniform(20, 80, 30)
    for name, shift in (("a", 0.0), ("b", -1.0)):
        rows = [result_row(tmp_path / f"v{k}.mp4", float(q + shift + rng.normal(0, 0.2)), 50.0 + k % 7)
                for k, q in enumerate(base)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_report([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], bootstrap=200)
    assert report.grouping == "files" and report.boards[0].groups == ["a", "b"]
    (quality,) = [c for c in report.boards[0].comparisons if c.dimension == "quality"]
    assert quality.paired and quality.n == (30, 30) and quality.test == "paired t" and quality.significant
    assert report.boards[0].entry("a").scores["quality"].above == ("b",)
    unpaired = leaderboard(report.files[0].rows + [dict(r, id="x" + r["id"]) for r in report.files[1].rows],
                           ["a"] * 30 + ["b"] * 30, bootstrap=200)
    assert not any(c.paired or c.significant for c in unpaired.comparisons)


# ---------------------------------------------------------------------------------------
# Reading inputs: matching, and clear errors naming file and line
# ---------------------------------------------------------------------------------------

def test_rows_match_manifest_records_by_hard_link_and_by_id(tmp_path):
    study = make_study(tmp_path, THREE_GENERATORS)
    # prepare's layout: the manifest's videos are hard links of the scored ones. A row whose id
    # matches nothing is still found through its file.
    (tmp_path / "prepared" / "videos").mkdir()
    rows = [json.loads(line) for line in study["results"].read_text().splitlines()]
    for r in rows:
        os.link(r["path"], tmp_path / "prepared" / "videos" / Path(r["path"]).name)
    rows[0]["id"] = "renamed.mp4"
    study["results"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_report([study["results"]], manifest=study["manifest"], bootstrap=200)
    assert report.groups[0] == [g for g, vs in THREE_GENERATORS.items() for _ in vs]
    assert report.annotations[0][0].record == "G1_0"
    assert report.human is not None and sorted(report.human.groups) == ["G1", "G2", "G3"]


def test_groups_csv_as_generators_csv(tmp_path):
    study = make_study(tmp_path, THREE_GENERATORS)
    groups = tmp_path / "generators.csv"  # `lmmeval synth`'s: ids without the suffix
    groups.write_text("video,generator\n" + "".join(f"{r['id']},{r['generator']}x\n" for r in study["records"]))
    report = build_report([study["results"]], manifest=study["manifest"], groups=groups, bootstrap=200)
    assert report.grouping == "csv" and sorted(report.boards[0].groups) == ["G1x", "G2x", "G3x"]


def test_bad_inputs_are_errors_naming_file_and_line(tmp_path):
    study = make_study(tmp_path, THREE_GENERATORS)
    not_jsonl = tmp_path / "results.csv"
    not_jsonl.write_text("id,path,quality\na.mp4,/x/a.mp4,50\n")
    with pytest.raises(ValueError, match=r"results\.csv, line 1: not valid JSON .*lmmeval score --out"):
        build_report([not_jsonl])
    lines = study["results"].read_text().splitlines()
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join(lines[:2] + [lines[2][:40]]) + "\n")
    with pytest.raises(ValueError, match=r"torn\.jsonl, line 3: not valid JSON"):
        build_report([torn])
    no_score = tmp_path / "no_score.jsonl"
    no_score.write_text(lines[0] + "\n" + json.dumps(dict(json.loads(lines[1]), quality=None)) + "\n")
    with pytest.raises(ValueError, match=r"no_score\.jsonl, line 2: field 'quality' must be a finite number"):
        build_report([no_score])
    twice = tmp_path / "twice.jsonl"
    twice.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(ValueError, match=r"twice\.jsonl, line 2: input 'G1_0\.mp4' again \(first on line 1\)"):
        build_report([twice])

    # A manifest, or a groups CSV, that matches no row.
    other = make_study(tmp_path / "other", {"X": [(1, 2), (3, 4)]})
    with pytest.raises(ValueError, match=r"other/prepared/manifest\.jsonl: matches no row of .*results\.jsonl"):
        build_report([study["results"]], manifest=other["manifest"])
    groups = tmp_path / "groups.csv"
    groups.write_text("input,group\nnothing.mp4,A\n")
    with pytest.raises(ValueError, match=r"groups\.csv: matches no row"):
        build_report([study["results"]], groups=groups)
    # A row whose group is unknown: named by file and line.
    groups.write_text("input,group\n" + "".join(f"{r['id']},g\n" for r in study["rows"][:5] + study["rows"][6:]))
    with pytest.raises(ValueError, match=r"results\.jsonl, line 6: input 'G2_1\.mp4' .* its group is unknown"):
        build_report([study["results"]], groups=groups)
    groups.write_text("input,group\nG1_0.mp4\n")
    with pytest.raises(ValueError, match=r"groups\.csv, line 2: 1 columns, the header has 2"):
        build_report([study["results"]], groups=groups)
    # ... and through the command: one line on stderr, exit status 2, no traceback.
    assert command.main([str(not_jsonl), "--out", str(tmp_path / "r")]) == 2


def test_command_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a.mp4", "path": "/a.mp4", "quality": 5}\nnot json\n')
    assert command.main([str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmmeval report: error: ") and "bad.jsonl, line 1" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------------------

def test_report_files_exist_and_parse(tmp_path):
    study = make_study(tmp_path, THREE_GENERATORS, failed=("G2_3",), ood=("G3_0",))
    out = tmp_path / "report"
    assert command.run(_args(str(study["results"]), "--manifest", str(study["manifest"]), "--out", str(out),
                             "--bootstrap", "300", "-q")) == 0
    with open(out / "leaderboard.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["scores"], r["group"]) for r in table] == [
        ("results", "G1"), ("results", "G3"), ("results", "G2"), ("MOS", "G1"), ("MOS", "G3"), ("MOS", "G2")]
    g2 = table[2]
    assert (g2["inputs"], g2["used"], g2["failed"]) == ("4", "3", "1")
    assert float(g2["quality_mean"]) == pytest.approx(np.mean([40, 45, 38]))
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["settings"]["bootstrap"] == 300 and data["command"] is None
    assert [e["group"] for e in data["leaderboards"][0]["entries"]] == ["G1", "G3", "G2"]
    assert data["correlations"]["results"][0]["n"] == 10  # 12 inputs, 1 failed, 1 out of distribution
    assert data["rank_agreement"]["results"][0]["kendall_tau"] == pytest.approx(1.0)
    assert "| G1 |" in (out / "leaderboard.md").read_text()
    page = (out / "index.html").read_text()
    assert 'id="leaderboard"' in page and "<script src" not in page and "<link rel=\"stylesheet\"" not in page
    items = json.loads(page.split('<script type="application/json" id="gallery-data">')[1].split("</script>")[0])
    assert len(items["items"]) == 12
    thumbs = [i["t"] for i in items["items"]]
    assert all(t and (out / t).is_file() for t in thumbs)
    assert Image.open(out / thumbs[0]).size == (3 * 40, 40)  # the three 40-px views side by side (never enlarged)
    for plot in ("distortions.png", "scores_1-results.png", "scores_2-MOS.png", "scatter_1-results.png"):
        assert Image.open(out / "plots" / plot).size[0] > 100

    # An earlier report is replaced only when asked; a folder of other files never.
    with pytest.raises(ValueError, match="holds an earlier report"):
        write_report(out, [study["results"]], bootstrap=200)
    write_report(out, [study["results"]], bootstrap=200, overwrite=True, thumbnails=False)
    assert json.loads((out / "leaderboard.json").read_text())["settings"]["manifest"] is None
    with pytest.raises(ValueError, match="folder of other files"):
        write_report(tmp_path / "raw", [study["results"]], bootstrap=200, overwrite=True)
    with pytest.raises(ValueError, match="contains the results file"):
        write_report(tmp_path, [study["results"]], bootstrap=200, overwrite=True)


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_report_is_not_loaded_by_lmmeval_or_its_inference_api():
    assert not {m for m in _modules_after("import lmmeval, lmmeval.inference") if m.startswith("lmmeval.report")}
    # The command's parser is built on every `lmmeval` call: it loads no statistics or plotting.
    loaded = _modules_after("import lmmeval.report.command")
    assert not {m for m in loaded if m.startswith(("lmmeval.report.", "scipy", "matplotlib"))} - {
        "lmmeval.report.command"}


@pytest.mark.slow
def test_command_flags_change_what_they_say(tmp_path):
    """--alpha: the family-wise level (4 inputs a group: the smallest exact two-sided p is 2/70, times
    3 pairs by Holm = 0.086, so nothing is significant at 0.05 and G1 is above both at 0.5);
    --include-ood: the out-of-distribution input counts in the mean; --groups: a CSV's groups instead
    of the generators; --no-thumbnails: a gallery without pictures."""
    study = make_study(tmp_path, THREE_GENERATORS, failed=("G2_3",), ood=("G3_0",))
    base = [str(study["results"]), "--manifest", str(study["manifest"]), "--bootstrap", "200", "-q"]

    def board(name, *extra):
        assert command.run(_args(*base, "--out", str(tmp_path / name), *extra)) == 0
        data = json.loads((tmp_path / name / "leaderboard.json").read_text())
        return {e["group"]: e for e in data["leaderboards"][0]["entries"]}

    strict, loose = board("strict"), board("loose", "--alpha", "0.5")
    assert strict["G1"]["scores"]["quality"]["above"] == []
    assert sorted(loose["G1"]["scores"]["quality"]["above"]) == ["G2", "G3"]
    assert strict["G3"]["used"] == 3 and board("ood", "--include-ood")["G3"]["used"] == 4
    groups = tmp_path / "groups.csv"
    groups.write_text("input,group\n" + "".join(f"{r['id']},{'AB'[i % 2]}\n" for i, r in enumerate(study["rows"])))
    assert set(board("grouped", "--groups", str(groups))) == {"A", "B"}
    board("plain", "--no-thumbnails")
    assert not any((tmp_path / "plain" / "thumbs").iterdir()) and any((tmp_path / "strict" / "thumbs").iterdir())


def test_public_names_are_the_functions_whatever_was_imported_first():
    """`from lmmeval.report import leaderboard` after the report's modules are loaded (as the command
    loads them) gives the function, not a submodule of the same name."""
    import importlib

    import lmmeval.report as report

    for module in ("build", "write", "ranking", "agreement", "inputs"):
        importlib.import_module(f"lmmeval.report.{module}")
    for name in report.__all__:
        value = getattr(report, name)
        assert not isinstance(value, type(report)), f"lmmeval.report.{name} is a module"
    from lmmeval.report import leaderboard, write_report

    assert callable(leaderboard) and callable(write_report)
