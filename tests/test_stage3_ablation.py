"""experiments/stage3_ablation: its table against hand-worked numbers, and bad input refused before
any fold trains."""

import json

import pytest

from research.stage3_ablation import METRICS, main, write


def _saliency(cc):
    return {m: cc if m == "cc" else 1.0 for m in METRICS}


def test_table_sets_each_fold_against_the_reference(tmp_path):
    reference = {0: _saliency(0.60), 1: _saliency(0.70)}
    results = [{"fold": 0, "saliency": _saliency(0.61)}, {"fold": 1, "saliency": _saliency(0.68)}]
    write(results, reference, tmp_path, "cmd", {"saliency_vision_depths": [0, 1]}, "abc1234")
    text = (tmp_path / "results.md").read_text()
    # reference: mean 0.650, population std 0.050; new: mean 0.645, std 0.035; changes +0.010, -0.020
    assert "| reference (the cross-validation's own stage 3) | 0.650 ± 0.050 |" in text
    assert "| saliency_vision_depths=[0, 1] | 0.645 ± 0.035 |" in text
    assert "+0.010, -0.020 (mean -0.005; fold-to-fold std of the reference 0.050)" in text
    assert json.loads((tmp_path / "results.json").read_text())["commit"] == "abc1234"


def test_bad_reference_or_cv_work_is_refused_before_training(prepared_manifest, tmp_path, capsys):
    common = ["--manifest", str(prepared_manifest), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]
    short = tmp_path / "results_cv.json"
    short.write_text(json.dumps({"folds": [{"assessor": {"saliency": _saliency(0.6)}}]}))
    for reference, cv_work, message in [
        (tmp_path / "missing.json", tmp_path, "missing.json: not a cross-validation's results.json"),
        (short, tmp_path, r"results_cv.json: no results for fold\(s\) \[1, 2, 3, 4\] \(it has 1 folds\)"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["--cv-work", str(cv_work), "--reference", str(reference), *common])
        assert exc.value.code == 2
        assert __import__("re").search(message, capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["--cv-work", str(tmp_path / "no_cv"), "--reference", str(short), "--folds", "0", *common])
    assert "no_cv/fold0/stage2/final: no stage-2 checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # nothing trained
