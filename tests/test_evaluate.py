"""Evaluation report and the saliency training loss, against hand-worked values."""

import json

import numpy as np
import pytest
import torch

from lmmeval.eval.evaluate import evaluate, pairwise_accuracy, render_agreement, write_report
from lmmeval.data.manifest import load_manifest
from lmmeval.training.config import SaliencyLossWeights
from lmmeval.training.losses import regression_loss, saliency_loss


def test_pairwise_accuracy_hand_worked():
    # pairs (0,1) and (0,2) ordered like the MOS, (1,2) reversed -> 2/3
    assert pairwise_accuracy([1, 2, 3], [1, 3, 2]) == pytest.approx(2 / 3)
    # a tied prediction counts half: (0,1) 0.5, (0,2) 1, (1,2) 1 -> 2.5/3
    assert pairwise_accuracy([1, 1, 2], [1, 2, 3]) == pytest.approx(2.5 / 3)
    # the pair with equal MOS (0,1) is not counted; (0,2) agrees, (1,2) does not -> 1/2
    assert pairwise_accuracy([3, 1, 2], [5, 5, 1]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least two distinct MOS values"):
        pairwise_accuracy([1, 2], [3, 3])


def test_render_agreement_hand_worked():
    """Heads a, b, c, d at two protocols (e only at the first: not compared). Quality ranks
    a<b<c<d at both but shifts by +2, +4, +6, +8 (mean 5); authenticity ranks d<c<b<a at the
    second, the reverse of the first (SRCC -1, mean shift 0); a constant score has no SRCC."""
    first = {"a": {"quality": 10, "authenticity": 1}, "b": {"quality": 20, "authenticity": 2},
             "c": {"quality": 30, "authenticity": 3}, "d": {"quality": 40, "authenticity": 4},
             "e": {"quality": 0, "authenticity": 0}}
    second = {"a": {"quality": 12, "authenticity": 4}, "b": {"quality": 24, "authenticity": 3},
              "c": {"quality": 36, "authenticity": 2}, "d": {"quality": 48, "authenticity": 1}}
    out = render_agreement(first, second)
    assert out["n"] == 4
    assert out["quality"] == {"srcc": pytest.approx(1.0), "mean_shift": pytest.approx(5.0)}
    assert out["authenticity"] == {"srcc": pytest.approx(-1.0), "mean_shift": pytest.approx(0.0)}
    flat = {k: {"quality": 50, "authenticity": v["authenticity"]} for k, v in second.items()}
    out = render_agreement(first, flat)
    assert out["quality"]["srcc"] is None and "constant" in out["quality"]["note"]
    with pytest.raises(ValueError, match="at least two heads in both, got 1"):
        render_agreement(first, {"a": second["a"]})


def test_saliency_loss_terms():
    target = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    logits = torch.logit(target.clamp(1e-4, 1 - 1e-4))
    perfect = saliency_loss(logits, target, SaliencyLossWeights())
    assert perfect["l1"] < 1e-3 and perfect["cc"] < 1e-3 and abs(perfect["kl"]) < 1e-3
    # BCE of a perfect prediction is the target's own binary entropy, by hand:
    h = [0.0, -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), np.log(2), 0.0]
    assert float(perfect["bce"]) == pytest.approx(np.mean(h), abs=1e-3)
    inverted = saliency_loss(-logits, target, SaliencyLossWeights())
    assert float(inverted["cc"]) == pytest.approx(2.0, abs=1e-2)  # CC = -1
    empty = saliency_loss(logits, torch.zeros(2, 2), SaliencyLossWeights(l1=1, cc=1, kl=1, bce=0))
    assert set(empty) == {"loss", "l1", "bce"} and float(empty["loss"]) == pytest.approx(float(empty["l1"]))


def test_regression_loss_is_l1_on_the_mos_scale():
    pred, mos = torch.tensor([[50.0, 60.0]]), torch.tensor([[40.0, 80.0]])
    assert float(regression_loss(pred, mos)) == pytest.approx((0.10 + 0.20) / 2)


def test_evaluate_writes_a_complete_report(tiny_assessor, prepared_manifest, tmp_path):
    records = [r for r in load_manifest(prepared_manifest) if r.fold == 0]
    report = evaluate(tiny_assessor, records, progress=False)
    written = write_report(report, tmp_path, records, "test")
    data = json.loads((tmp_path / "report.json").read_text())
    assert json.loads(json.dumps(written)) == data and "provenance" not in report  # returned as written
    for dim in ("quality", "authenticity"):
        assert {"srcc", "plcc", "plcc_fitted", "krcc", "pairwise_accuracy", "level_accuracy"} <= set(data[dim])
    assert 0 <= data["distortions"]["exact_set_accuracy"] <= 1
    assert data["saliency"]["views"] > 0 and 0 <= data["saliency"]["auc_judd"] <= 1
    assert "PLCC (logistic-4 fitted)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "scatter.png").stat().st_size > 0 and (tmp_path / "generators.png").stat().st_size > 0


def test_evaluate_numbers_are_those_of_its_own_predictions(prepared_manifest):
    """Recomputed from the report's saved predictions with scipy and by hand: SRCC, KRCC, PLCC per
    dimension, exact-set accuracy over the labelled records (the embedded checkpoint: varied scores)."""
    from scipy.stats import kendalltau, pearsonr, spearmanr

    from lmmeval.inference.assessor import Assessor

    records = [r for r in load_manifest(prepared_manifest) if r.fold == 0]
    report = evaluate(Assessor.from_pretrained(device="cpu"), records, progress=False)
    for dim in ("quality", "authenticity"):
        pred, mos = [p[dim] for p in report["predictions"]], [r.mos[dim] for r in records]
        assert report[dim]["srcc"] == pytest.approx(spearmanr(pred, mos)[0], abs=1e-9)
        assert report[dim]["krcc"] == pytest.approx(kendalltau(pred, mos)[0], abs=1e-9)
        assert report[dim]["plcc"] == pytest.approx(pearsonr(pred, mos)[0], abs=1e-9)
    exact = [sorted(p["distortions"]) == sorted(r.categories) for p, r in zip(report["predictions"], records)]
    assert report["distortions"]["exact_set_accuracy"] == pytest.approx(sum(exact) / len(exact))


def test_saliency_is_scored_on_the_sampled_frame_nearest_each_view(tmp_path):
    """Hand-worked pairing: maps sampled at frames 0, 0, 6, 6, 12, 12 (two per temporal patch); a view
    at frame 5 is scored against the map of frame 6 (index 2, not index 5), one at frame 11 against
    frame 12's. The ground truth of each view is that very map, so CC is 1 exactly when paired right."""
    from types import SimpleNamespace

    from lmmeval.data.manifest import View
    from lmmeval.data.saliency_maps import points_to_saliency_map, save_saliency_png
    from lmmeval.eval.evaluate import _saliency_report

    centres = [(8, 8), (24, 8), (24, 24)]  # (x, y) of the blob of frames 0, 6 and 12
    maps = [points_to_saliency_map([c], 32, 32, sigma=3) for c in centres]
    pred = SimpleNamespace(frame_indices=[0, 0, 6, 6, 12, 12], saliency=np.stack([m for m in maps for _ in (0, 1)]))
    views = {}
    for name, frame, k in (("-45", 5, 1), ("45", 11, 2)):
        path = tmp_path / f"{name}.png"
        save_saliency_png(path, maps[k])
        views[name] = View(frame=frame, saliency=path.name, fixations=[list(centres[k])], saliency_path=path)
    record = SimpleNamespace(views=views)
    out = _saliency_report([pred], [record])
    assert out["views"] == 2 and out["cc"] == pytest.approx(1.0, abs=1e-4)


def test_evaluate_command_records_its_command_line_and_commit(prepared_manifest, tmp_path, capsys):
    from lmmeval.cli import main
    from lmmeval.provenance import git_commit

    out = tmp_path / "report"
    argv = ["evaluate", "--manifest", str(prepared_manifest), "--fold", "0", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0  # the embedded demo checkpoint (no --model)
    provenance = json.loads((out / "report.json").read_text())["provenance"]
    assert provenance == {"command": "lmmeval " + " ".join(argv), "commit": git_commit()}
    assert f"Made by `lmmeval evaluate --manifest {prepared_manifest}" in (out / "report.md").read_text()
    printed = capsys.readouterr()
    assert "Made by `lmmeval evaluate" in printed.out  # the printed report is the file
    # The test study is rendered with seed 0, like the demo checkpoint's training study: said, not hidden.
    assert "warning: overlap with training data: up to 8 of the 8 evaluated videos" in printed.err
    assert "**Warning: overlap with training data:** up to 8 of the 8" in (out / "report.md").read_text()


def _canned_evaluate(assessor, records, batch_size=4, progress=True):
    """A report with perfect predictions, without running a model (the overlap does not depend on it)."""
    perfect = {"srcc": 1.0, "plcc": 1.0, "plcc_fitted": 1.0, "krcc": 1.0, "pairwise_accuracy": 1.0, "level_accuracy": 1.0}
    return {"n": len(records), "quality": perfect, "authenticity": perfect,
            "distortions": {"exact_set_accuracy": None, "per_category": {}, "not_labelled": len(records)},
            "saliency": {"views": 0}, "predictions": [{"id": r.id, **r.mos, "distortions": []} for r in records]}


def test_evaluate_says_when_the_evaluated_videos_overlap_the_checkpoints_training_data(prepared_manifest, tmp_path,
                                                                                     monkeypatch, capsys):
    """The demo checkpoint's record says its stages 1-3 trained on 400 heads of `lmmeval synth --seed 0`:
    the seed-0 test study's fold 0 (8 videos) warns, on stderr and in both reports; the same study
    marked as rendered with seed 5 does not. A checkpoint whose record lists the SHA-1 of three of those
    videos warns about exactly those three, whatever the seed."""
    import hashlib
    import shutil

    import lmmeval.eval.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "evaluate", _canned_evaluate)
    seed0 = evaluate_module.run(None, str(prepared_manifest), 0, str(tmp_path / "seed0"), load_assessor=lambda d: None)
    err = capsys.readouterr().err
    assert "warning: overlap with training data: up to 8 of the 8 evaluated videos show heads that stage(s) 1, 2, 3 " \
           "trained on runs/cv/prepared/manifest.jsonl: both were rendered with `lmmeval synth --seed 0`" in err
    assert seed0["training_overlap"]["overlap"] and "reconstructed" in seed0["training_overlap"]
    assert json.loads((tmp_path / "seed0" / "report.json").read_text())["training_overlap"] == seed0["training_overlap"]
    assert "**Warning: overlap with training data:** up to 8 of the 8" in (tmp_path / "seed0" / "report.md").read_text()

    seed5 = tmp_path / "seed5"
    shutil.copytree(prepared_manifest.parent, seed5)
    summary = json.loads((seed5 / "summary.json").read_text())
    summary["synth"]["seed"] = 5
    (seed5 / "summary.json").write_text(json.dumps(summary))
    report = evaluate_module.run(None, str(seed5 / "manifest.jsonl"), 0, str(tmp_path / "r5"), load_assessor=lambda d: None)
    assert report["training_overlap"]["overlap"] == [] and "overlap" not in capsys.readouterr().err
    assert "Overlap with training data: none found" in (tmp_path / "r5" / "report.md").read_text()

    fold0 = [r for r in load_manifest(seed5 / "manifest.jsonl") if r.fold == 0]
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "training_data.json").write_text(json.dumps({"format": 1, "incomplete": [], "studies": [
        {"manifest": "elsewhere/manifest.jsonl", "stages": [2], "synth": None, "ids": ["a", "b", "c"],
         "sha1": [hashlib.sha1(r.video_path.read_bytes()).hexdigest() for r in fold0[:3]] + ["0" * 40]}]}))
    report = evaluate_module.run(str(ckpt), str(seed5 / "manifest.jsonl"), 0, str(tmp_path / "rc"),
                                 load_assessor=lambda d: None)
    assert report["training_overlap"]["overlap"] == [
        "3 of the 8 evaluated videos are byte-identical to videos stage(s) 2 trained on elsewhere/manifest.jsonl"]
    assert "3 of the 8 evaluated videos are byte-identical" in capsys.readouterr().err
