"""Loading an assessor as the real 7B path does: precision, generation settings a base cannot change,
checkpoints that load from anywhere, a checkpoint checked against its base before any weight loads,
and a command line that answers every bad argument with one line, never a traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from lmmeval.cli import main
from lmmeval.inference.assessor import Assessor
from lmmeval.model.factory import DEMO_CHECKPOINT


@pytest.fixture(scope="module")
def demo():
    return Assessor.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def video(synthetic_raw):
    return str(sorted((synthetic_raw / "videos").glob("*.mp4"))[0])


def test_bfloat16_on_cpu_scores_close_to_float32(demo, video):
    """--dtype bfloat16 loads the base in bfloat16 (the heads stay float32): the demo's scores move by
    a few MOS points at most, its levels not at all here."""
    half = Assessor.from_pretrained(device="cpu", dtype="bfloat16")
    assert half.model.backbone.get_input_embeddings().weight.dtype == torch.bfloat16
    assert {p.dtype for p in half.model.regression.parameters()} == {torch.float32}
    assert {p.dtype for p in half.model.saliency.parameters()} == {torch.float32}
    full, low = demo.assess(video), half.assess(video)
    for dim in ("quality", "authenticity"):
        assert abs(getattr(full, dim) - getattr(low, dim)) < 3.0, dim
    assert np.abs(full.saliency - low.saliency).max() < 0.1
    with pytest.raises(ValueError, match="dtype must be one of"):
        Assessor.from_pretrained(device="cpu", dtype="float16")


def test_generation_ignores_the_bases_sampling_knobs(demo, tmp_path):
    """A base whose generation_config.json sets a repetition penalty, top-k, top-p, a temperature and
    sampling (as Qwen2.5-VL releases do, in part) gives the same answers: lmmeval's generation is greedy
    with no penalty, whatever the base says."""
    base = tmp_path / "base"
    shutil.copytree(DEMO_CHECKPOINT / "base", base)
    config = json.loads((base / "generation_config.json").read_text())
    config |= {"repetition_penalty": 1.05, "top_k": 1, "top_p": 0.001, "temperature": 0.1, "do_sample": True}
    (base / "generation_config.json").write_text(json.dumps(config))
    knobbed = Assessor.from_pretrained(device="cpu", base=base)
    assert knobbed.model.backbone.generation_config.repetition_penalty == 1.05  # the knobs did load
    from .test_demo_golden import golden_inputs

    video = golden_inputs()[2]  # an input the demo answers with repeated words
    ours, theirs = demo.assess(video, describe=True), knobbed.assess(video, describe=True)
    assert ours.distortions == theirs.distortions and ours.description == theirs.description
    # The description repeats tokens (the tiny demo model's text): a penalty would have changed it.
    assert len(set(ours.description.split())) < len(ours.description.split())


def test_a_saved_checkpoint_loads_from_any_folder(demo, video, tmp_path, monkeypatch):
    """The demo records its base as the relative "base" (inside its folder); saved elsewhere, the copy
    records where that base is, and loads from another working directory the same."""
    saved = demo.save_pretrained(tmp_path / "copy")
    assert json.loads((saved / "config.json").read_text())["base"] == str((DEMO_CHECKPOINT / "base").resolve())
    monkeypatch.chdir(tmp_path)
    moved = shutil.move(str(saved), str(tmp_path / "elsewhere"))
    again = Assessor.from_pretrained(moved, device="cpu")
    assert again.assess(video).quality == demo.assess(video).quality


def _qwen7b_config(path, **change):
    """A base folder holding only the config.json of Qwen2.5-VL-7B-Instruct as released (top-level
    LLM sizes, the vision tower's nested): enough for the check, which reads no weights."""
    data = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "hidden_size": 3584, "vocab_size": 152064, "vision_start_token_id": 151652, "image_token_id": 151655,
            "video_token_id": 151656, "vision_config": {"hidden_size": 1280, "out_hidden_size": 3584}} | change
    path.mkdir()
    (path / "config.json").write_text(json.dumps(data))
    return path


def test_a_checkpoint_is_checked_against_its_base_before_loading(video, tmp_path, capsys, monkeypatch):
    """The demo checkpoint (tiny preset) on a 7B base is one line naming both and what differs, from
    the JSON files alone: no weight is read (loading them would fail here: the folder has none)."""
    import lmmeval.model.factory as factory

    monkeypatch.setattr(factory, "load_backbone", lambda *a, **k: pytest.fail("weights were loaded"))
    base = _qwen7b_config(tmp_path / "qwen7b")
    with pytest.raises(ValueError, match="was not trained on") as err:
        Assessor.from_pretrained(device="cpu", base=base)
    message = str(err.value)
    assert message.startswith(f"{DEMO_CHECKPOINT} was not trained on {base}: LLM width 128 vs 3584; vision width "
                              "64 vs 1280; <|vision_start|> id 2057 vs 151652")
    assert "\n" not in message
    # Through the command line: the same line, exit status 2.
    assert main(["score", str(video), "--out", str(tmp_path / "r.jsonl"), "--model", str(DEMO_CHECKPOINT),
                 "--base", str(base), "-q"]) == 2
    assert "was not trained on" in capsys.readouterr().err
    # A matching shape passes the check (the tiny preset's sizes, in the released layout).
    tiny = _qwen7b_config(tmp_path / "tiny", hidden_size=128, vocab_size=2112, vision_start_token_id=2057,
                          image_token_id=2060, video_token_id=2061, vision_config={"hidden_size": 64})
    from lmmeval.model.configuration import AssessorConfig

    factory.check_compatible(DEMO_CHECKPOINT, AssessorConfig.load(DEMO_CHECKPOINT / "config.json"), str(tiny))


def test_a_base_without_a_checkpoint_needs_untrained(video, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["score", video, "--out", str(out), "--base", "preset:tiny", "-q"]) == 2
    assert "--base preset:tiny needs a checkpoint trained on that base (--model DIR)" in capsys.readouterr().err
    assert main(["score", video, "--out", str(out), "--base", "preset:tiny", "--untrained", "--device", "cpu",
                 "-q"]) == 0
    assert "untrained heads on preset:tiny: the scores mean nothing" in capsys.readouterr().err
    row = json.loads(out.read_text())
    assert "untrained assessor: its scores mean nothing" in row["notes"]


@pytest.mark.parametrize("argv, names", [
    (["synth", "{tmp}/raw", "--n", "0"], "n must be >= 1, got 0"),
    (["synth", "{tmp}/raw", "--size", "15"], "size must be an even number >= 16 (H.264), got 15"),
    (["prepare", "{tmp}/missing", "{tmp}/out"], "{tmp}/missing/ratings.csv: missing"),
    (["import-gen3dhf", "{tmp}/missing", "{tmp}/out", "--labels", "{tmp}/labels"], "{tmp}/missing/video_RGB: no such folder"),
    (["import-gen3dhf", "{tmp}", "{tmp}/out", "--labels", "{tmp}", "--folds", "1"], "folds must be >= 2, got 1"),
    (["stats", "{tmp}/missing.jsonl"], "{tmp}/missing.jsonl: no such manifest"),
    (["stats", "{tmp}/not_a_manifest.jsonl"], "{tmp}/not_a_manifest.jsonl, line 1: not valid JSON"),
    (["score", "{tmp}/x.png", "--out", "{tmp}/r.jsonl", "--model", "{tmp}/no_checkpoint"],
     "{tmp}/no_checkpoint: not an lmmeval checkpoint"),
    (["score", "{tmp}/x.png", "--out", "{tmp}/r.jsonl", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["score", "{tmp}/x.png", "--out", "{tmp}/r.jsonl", "--overlay"], "--overlay needs --saliency-dir"),
    (["score", "{tmp}/x.png", "--out", "{tmp}/r.jsonl", "--untrained"], "--untrained builds fresh heads on --base"),
    (["score", "{tmp}/x.png", "--out", "{tmp}/r.jsonl", "--masks", "{tmp}/m", "--mask-threshold", "2"],
     "mask threshold must be in [0, 1] and dilate >= 0, got 2.0"),
    (["evaluate", "--manifest", "{tmp}/missing.jsonl", "--out", "{tmp}/report"], "{tmp}/missing.jsonl: no such manifest"),
    (["evaluate", "--manifest", "{tmp}/not_a_manifest.jsonl", "--out", "{tmp}/report", "--split", "eval"],
     "{tmp}/not_a_manifest.jsonl, line 1: not valid JSON"),
    (["calibrate-ood", "--model", "{tmp}/no_checkpoint", "--manifest", "{tmp}/missing.jsonl"],
     "{tmp}/missing.jsonl: no such manifest"),
    (["calibrate-ood", "--model", "{tmp}", "--manifest", "{tmp}/not_a_manifest.jsonl", "--components", "0"],
     "components must be >= 1, got 0"),
])
def test_bad_arguments_and_paths_are_one_line_never_a_traceback(argv, names, tmp_path, capsys):
    """Each mistake is one line that names what was wrong (the argument, or the file), exit status 2."""
    from PIL import Image

    (tmp_path / "not_a_manifest.jsonl").write_text("this is not json\n")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.png")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"lmmeval {argv[0]}: error: ") and err.count("\n") == 1, err
    assert names.format(tmp=tmp_path) in err, err


@pytest.mark.parametrize("argv", [["score"], ["evaluate", "--manifest", "m"], ["score", "x", "--out", "o", "--dtype", "half"],
                                  ["nonsense"], ["prepare", "a"]])
def test_usage_errors_exit_2_with_argparse_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "usage: lmmeval" in capsys.readouterr().err


def test_non_finite_outputs_become_that_inputs_error(demo, synthetic_raw, monkeypatch):
    """A NaN score, a NaN saliency map or an infinite OOD score makes that input an error with no
    scores (its row has "error" and nulls, valid JSON); the other inputs of the batch score as alone."""
    videos = [str(p) for p in sorted((synthetic_raw / "videos").glob("*.mp4"))[:4]]
    alone = demo.assess(videos[1], distortions=False)
    forward, score = demo.model.forward, demo.parts.ood.score

    def broken_forward(batch, **kw):
        out = forward(batch, **kw)
        out.scores = out.scores.clone()
        out.scores[0, 1] = float("nan")  # input 0: authenticity
        out.saliency_logits[2] = torch.full_like(out.saliency_logits[2], float("nan"))  # input 2: its maps
        return out

    def broken_score(features):
        scores = score(features)
        scores[3] = float("inf")  # input 3: what a zero variance gave
        return scores

    monkeypatch.setattr(demo.model, "forward", broken_forward)
    monkeypatch.setattr(demo.parts.ood, "score", broken_score)
    results = demo.assess(videos, batch_size=4, on_error="return", distortions=False)
    for i, what in ((0, "scores"), (2, "saliency"), (3, "ood_score")):
        assert results[i].error == (f"{videos[i]}: the model's {what} for this input are not finite (NaN or inf); "
                                    "no scores are given")
        row = results[i].to_dict()
        assert row["quality"] is row["authenticity"] is row["ood_score"] is row["quality_level"] is None
        assert row["level_probs"] == {} and results[i].saliency is None
    assert results[1].ok and results[1].quality == pytest.approx(alone.quality, abs=1e-3)
    assert results[1].ood_score == pytest.approx(alone.ood_score, rel=1e-3)
    for r in results:
        json.dumps(r.to_dict(), allow_nan=False)  # no NaN or Infinity reaches a results file


def _corrupt(ckpt, what: str) -> str:
    """Corrupt a demo copy as named; returns what the one-line error must say."""
    from safetensors.torch import load_file, save_file

    config = json.loads((ckpt / "config.json").read_text())
    if what == "inner_size":
        config["regression"]["inner_size"] = -5
        (ckpt / "config.json").write_text(json.dumps(config))
        return f"{ckpt / 'config.json'}: regression.inner_size must be an integer in [1, 65536], got -5"
    if what == "fps":
        config["sampling"]["fps"] = float("nan")
        (ckpt / "config.json").write_text(json.dumps(config))
        return f"{ckpt / 'config.json'}: sampling.fps must be a number in (0, 120], got nan"
    if what == "nan_head":
        heads = load_file(ckpt / "heads.safetensors")
        heads["regression.mlp.4.weight"][0, 0] = float("nan")
        save_file(heads, ckpt / "heads.safetensors")
        return f"{ckpt / 'heads.safetensors'}: tensor 'regression.mlp.4.weight' is not finite"
    if what == "zero_variance":
        from lmmeval.model.ood import FeatureDistribution

        dist = FeatureDistribution.load(ckpt)
        tensors = {"mean": torch.tensor(dist.mean), "axes": torch.tensor(dist.axes),
                   "variances": torch.zeros(len(dist.variances))}
        save_file({k: v.float() for k, v in tensors.items()}, ckpt / "ood.safetensors",
                  metadata={"lmmeval_ood": json.dumps({"feature": dist.feature, "rest_variance": dist.rest_variance,
                                                      "threshold": dist.threshold, "quantile": dist.quantile,
                                                      "n_fit": dist.n_fit})})
        return f"{ckpt / 'ood.safetensors'}: tensor 'variances' must be > 0"
    if what == "adapter_bin":
        torch.save(load_file(ckpt / "adapter_model.safetensors"), ckpt / "adapter_model.bin")
        (ckpt / "adapter_model.safetensors").unlink()
        return f"{ckpt / 'adapter_model.bin'}: a pickled LoRA adapter"
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["inner_size", "fps", "nan_head", "zero_variance", "adapter_bin"])
def test_a_corrupt_checkpoint_is_one_line_exit_2(what, tmp_path, capsys):
    """Each measured failure of a bad checkpoint (a torch error, fps NaN accepted, "quality": null rows
    with exit 0, "ood_score": Infinity, a pickle loaded) is now one line naming the file and the key."""
    from .test_ood import PHOTO

    ckpt = shutil.copytree(DEMO_CHECKPOINT, tmp_path / "ckpt")
    expected = _corrupt(ckpt, what)
    assert main(["score", str(PHOTO), "--out", str(tmp_path / "r.jsonl"), "--model", str(ckpt), "--device", "cpu",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lmmeval score: error: {expected}") and err.count("\n") == 1, err
