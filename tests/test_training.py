"""The three training stages under the DeepSpeed engine on CPU (tiny preset, a few steps):
the loss falls, exactly the right parameters change, and a resumed run reproduces the loss."""

import csv
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lmmeval.inference.assessor import Assessor
from lmmeval.model import factory
from lmmeval.model.configuration import LoraSettings
from lmmeval.model.configuration import SamplingConfig
from lmmeval.training import TrainConfig, run_stage

SAMPLING = SamplingConfig(fps=4.0, max_frames=8, max_pixels=112 * 112, min_pixels=3136)


def _config(stage, manifest, out, **kw):
    base = dict(stage=stage, manifest=str(manifest), output_dir=str(out), steps=10, batch_size=4, lr=2e-3,
                warmup_steps=2, save_every=5, log_every=1, device="cpu", seed=0)
    return TrainConfig(**(base | kw))


def _losses(log):
    with open(log) as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def train8(prepared_manifest):
    """The first 8 videos as their own manifest (next to the full one, so its relative paths
    resolve): 10 steps on few videos are enough to see each stage fit its data."""
    path = prepared_manifest.parent / "train8.jsonl"
    path.write_text("".join(prepared_manifest.read_text().splitlines(keepends=True)[:8]))
    return path


@pytest.fixture(scope="module")
def other_study(tmp_path_factory):
    """A second, disjoint study (another render seed), 8 videos: extra training data."""
    from .conftest import SMALL_SET

    from lmmeval.data.prepare import prepare
    from lmmeval.synth import SynthConfig, synthesize

    raw = synthesize(tmp_path_factory.mktemp("other_raw"), SynthConfig(**(SMALL_SET | {"n": 8, "seed": 1})),
                     progress=False)
    return prepare(raw, tmp_path_factory.mktemp("other_prepared"), progress=False)


@pytest.fixture(scope="module")
def stages(train8, tiny_base, tmp_path_factory):
    prepared_manifest = train8
    root = tmp_path_factory.mktemp("train")
    finals = {}
    finals[1] = run_stage(_config(1, prepared_manifest, root / "s1", base=str(tiny_base), sampling=SAMPLING), progress=False)
    finals[2] = run_stage(_config(2, prepared_manifest, root / "s2", init_from=str(finals[1]), lr=1e-3, pairwise_weight=0.5),
                          progress=False)
    finals[3] = run_stage(_config(3, prepared_manifest, root / "s3", init_from=str(finals[2]), lr=3e-3), progress=False)
    return root, finals


def _tensors(folder):
    return load_file(folder / "adapter_model.safetensors"), load_file(folder / "heads.safetensors")


def _same(a, b, prefix=""):
    keys = [k for k in a if k.startswith(prefix)]
    assert keys
    return all(a[k].equal(b[k]) for k in keys)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_loss_falls(stages, stage, train8, tiny_base):
    """The stage's loss on a fixed batch of its training data, before vs after its 10 steps
    (per-step losses are too noisy over different batches to compare)."""
    import torch

    from lmmeval.data.manifest import load_manifest
    from lmmeval.training.data import ManifestData
    from lmmeval.training.stages import STAGES

    root, finals = stages
    config = _config(stage, train8, root / "unused", base="x", init_from="x")
    if stage == 1:
        before = Assessor.from_base(tiny_base, device="cpu", sampling=SAMPLING, seed=0)
        factory.add_lora(before.parts, LoraSettings())  # LoRA B starts at zero: the same function as the base
    else:
        before = Assessor.from_pretrained(finals[stage - 1], device="cpu")
    after = Assessor.from_pretrained(finals[stage], device="cpu")
    records = load_manifest(train8)
    data = ManifestData(records, after.processor, after.config.sampling, after.parts.geometry,
                        STAGES[stage].tasks(config), with_saliency=STAGES[stage].with_saliency)
    batch = data.batch(range(8))
    losses = []
    for assessor in (before, after):
        assessor.model.eval()
        with torch.no_grad():
            losses.append(float(STAGES[stage].loss(config, assessor.model, batch)["loss"]))
    assert losses[1] < 0.99 * losses[0], losses
    assert len(_losses(root / f"s{stage}" / "log.csv")) == 10  # one log row per step
    if stage == 2:  # the Bradley-Terry term is trained and logged
        with open(root / "s2" / "log.csv") as f:
            assert all(float(r["pairwise"]) > 0 for r in csv.DictReader(f))


def test_only_the_stage_parameters_change(stages, tiny_base):
    _, finals = stages
    a1, h1 = _tensors(finals[1])
    a2, h2 = _tensors(finals[2])
    a3, h3 = _tensors(finals[3])
    init = Assessor.from_base(tiny_base, device="cpu", sampling=SAMPLING, seed=0)  # the heads stage 1 started from
    h0 = {f"regression.{k}": v for k, v in init.model.regression.state_dict().items()}
    h0 |= {f"saliency.{k}": v for k, v in init.model.saliency.state_dict().items()}
    # Stage 1: LoRA learns (B starts at zero), the heads stay as initialised.
    assert any(v.abs().sum() > 0 for k, v in a1.items() if "lora_B" in k)
    assert _same(h1, h0, "regression.") and _same(h1, h0, "saliency.")
    # Stage 2: LoRA and the regression head learn; the decoder does not.
    assert not _same(a2, a1, "") and not _same(h2, h1, "regression.") and _same(h2, h1, "saliency.")
    # Stage 3: only the decoder learns.
    assert _same(a3, a2, "") and _same(h3, h2, "regression.") and not _same(h3, h2, "saliency.")
    # Only LLM attention projections carry LoRA: the vision tower stays frozen.
    assert all("language_model" in k and any(p in k for p in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in a1)


def test_final_folder_loads_and_records_its_stages(stages):
    _, finals = stages
    a = Assessor.from_pretrained(finals[3], device="cpu")
    assert a.config.trained_stages == [1, 2, 3]
    assert a.config.sampling == SAMPLING  # sampled at inference exactly as in training


def _resume_after_a_kill(full, cut, step: int, config, deepspeed=None):
    """Rerun ``config`` into ``cut`` as if a run writing ``full`` had been killed after step
    ``step + 1``: the checkpoint of ``step`` is complete, the next one was half written (its
    temporary folder is left behind), and log.csv already holds step ``step + 1``. The resumed run
    must redo that step from the checkpoint and reproduce the uninterrupted run's losses."""
    tag = f"step{step:08d}"
    (cut / "checkpoints" / ".tmp" / f"step{step + 1:08d}").mkdir(parents=True)
    (cut / "checkpoints" / ".tmp" / f"step{step + 1:08d}" / "mp_rank_00_model_states.pt").write_bytes(b"\x80half")
    shutil.copytree(full / "checkpoints" / tag, cut / "checkpoints" / tag)
    (cut / "checkpoints" / "latest").write_text(tag)
    rows = (full / "log.csv").read_text().splitlines(keepends=True)
    (cut / "log.csv").write_text("".join(rows[:step + 2]))  # header, steps 1..step, and step + 1
    run_stage(config, deepspeed, resume=True, progress=False)
    steps = [line.split(",")[0] for line in (cut / "log.csv").read_text().splitlines()[1:]]
    n = len(rows) - 1
    assert steps == [str(i) for i in range(1, step + 2)] + [str(i) for i in range(step + 1, n + 1)]
    resumed = _losses(cut / "log.csv")
    assert resumed[step + 1:] == pytest.approx(_losses(full / "log.csv")[step:], rel=1e-4)
    assert (cut / "final" / "heads.safetensors").is_file()


def test_resume_reproduces_the_loss(stages, train8):
    """Stage 2 killed after step 6, its step-5 checkpoint complete and a later one half written:
    the resumed run redoes step 6 and gives the same losses as the uninterrupted run."""
    root, finals = stages
    cut = root / "s2_cut"
    _resume_after_a_kill(root / "s2", cut, 5, _config(2, train8, cut, init_from=str(finals[1]), lr=1e-3,
                                                      pairwise_weight=0.5))


def test_stage2_can_train_a_head_that_reads_the_video_tokens(stages, train8):
    """regression_video_mean: stage 2 swaps stage 1's untrained head for one that also reads the
    mean video-token state, trains it (both parts), and the checkpoint says which head it holds."""
    root, finals = stages
    final = run_stage(_config(2, train8, root / "s2_vm", init_from=str(finals[1]), lr=1e-3, steps=4,
                              regression_video_mean=True), progress=False)
    a = Assessor.from_pretrained(final, device="cpu")
    assert a.config.regression.video_mean and a.config.trained_stages == [1, 2]
    fresh = Assessor.from_pretrained(finals[1], device="cpu")
    factory.replace_regression_head(fresh.parts, video_mean=True, seed=0)  # what stage 2 started from
    trained, start = a.model.regression.state_dict(), fresh.model.regression.state_dict()
    assert set(trained) == set(start) and any(k.startswith("video_norm.") for k in trained)
    assert not trained["mlp.1.weight"].equal(start["mlp.1.weight"])
    assert not trained["video_norm.weight"].equal(start["video_norm.weight"])
    with pytest.raises(ValueError, match="stage 2 setting"):
        _config(3, train8, root / "unused", init_from=str(final), regression_video_mean=True)


def test_stage3_can_train_a_decoder_that_reads_earlier_vision_blocks(stages, train8):
    """saliency_vision_depths: stage 3 swaps the checkpoint's decoder for one with a branch per earlier
    block, trains every branch, and the checkpoint records the blocks (and loads them back)."""
    root, finals = stages
    final = run_stage(_config(3, train8, root / "s3_depths", init_from=str(finals[2]), lr=1e-3, steps=3,
                              saliency_vision_depths=[0, 2]), progress=False)
    a = Assessor.from_pretrained(final, device="cpu")
    assert a.config.saliency.vision_depths == [0, 2] and len(a.model.saliency.earlier_vision) == 2
    fresh = Assessor.from_pretrained(finals[2], device="cpu")
    factory.replace_saliency_decoder(fresh.parts, [0, 2], seed=0)  # what stage 3 started from
    trained, start = a.model.saliency.state_dict(), fresh.model.saliency.state_dict()
    assert set(trained) == set(start)
    for branch in ("earlier_vision.0.0.0.weight", "earlier_vision.1.0.0.weight", "vision.0.0.weight"):
        assert not trained[branch].equal(start[branch]), branch
    with pytest.raises(ValueError, match="stage 3 setting"):
        _config(2, train8, root / "unused", init_from=str(finals[1]), saliency_vision_depths=[0])


def test_config_errors_are_clear(tmp_path):
    from lmmeval.training import load_train_config

    path = tmp_path / "bad.yaml"
    path.write_text("stage: 2\nmanifest: m.jsonl\noutput_dir: out\ninit_from: x\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\]"):
        load_train_config(path)
    with pytest.raises(ValueError, match="stage 1 needs 'base'"):
        TrainConfig(stage=1, manifest="m", output_dir="o")
    path.write_text("stage: 2\nmanifest: m.jsonl\noutput_dir: out\ninit_from: x\nregression_video_mean: flase\n")
    with pytest.raises(ValueError, match="regression_video_mean must be true or false, got 'flase'"):
        load_train_config(path)
    for value, message in (("m2.jsonl", "extra_manifests must be a list of manifest paths, got 'm2.jsonl'"),
                           ("[m2.jsonl, m2.jsonl]", "extra_manifests and renders name m2.jsonl more than once")):
        path.write_text(f"stage: 2\nmanifest: m.jsonl\noutput_dir: out\ninit_from: x\nextra_manifests: {value}\n")
        with pytest.raises(ValueError, match=re.escape(message)):
            load_train_config(path)


def test_extra_manifests_join_the_training_records_once_shown_disjoint(train8, other_study, prepared_manifest,
                                                                       tmp_path, monkeypatch):
    """The manifest's held-out fold stays out; every record of an extra study goes in, whatever its
    fold. A study rendered with the manifest's seed (here: a copy of the manifest's own study) is
    refused before any model is loaded."""
    import json

    import lmmeval.training.recipe as recipe
    from lmmeval.data.manifest import load_manifest

    class Captured(Exception):
        pass

    def capture(records, *args, **kwargs):
        raise Captured([(r.id, str(r.video_path)) for r in records])

    monkeypatch.setattr(recipe, "ManifestData", capture)
    with pytest.raises(Captured) as caught:
        run_stage(_config(1, train8, tmp_path / "s1", base="preset:tiny", fold=0, extra_manifests=[str(other_study)]),
                  None, progress=False)
    expected = [(r.id, str(r.video_path)) for r in load_manifest(train8) if r.fold != 0]
    extra = [(r.id, str(r.video_path)) for r in load_manifest(other_study)]
    assert any(r.fold == 0 for r in load_manifest(other_study))  # trained on all the same
    assert caught.value.args[0] == expected + extra
    # Same render seed as the manifest's study (summary.json): the same heads, refused.
    copy = tmp_path / "copy"
    shutil.copytree(prepared_manifest.parent, copy)
    assert json.loads((copy / "summary.json").read_text())["synth"]["seed"] == 0
    with pytest.raises(ValueError, match=r"both rendered with `lmmeval synth --seed 0`"):
        run_stage(_config(1, train8, tmp_path / "s1b", base="preset:tiny", extra_manifests=[str(copy / "manifest.jsonl")]),
                  None, progress=False)
    assert not (tmp_path / "s1b" / "log.csv").exists()


def _render_of(manifest: Path, render: Path, name: str, edit=None) -> Path:
    """``render``'s records of the videos in ``manifest``, as a manifest beside ``render`` (so its
    paths resolve); ``edit(record)`` may change each record (a dict) first."""
    import json

    ids = {json.loads(line)["id"] for line in manifest.read_text().splitlines()}
    lines = [json.loads(line) for line in render.read_text().splitlines()]
    lines = [r for r in lines if r["id"] in ids]
    for r in lines:
        if edit:
            edit(r)
    out = render.parent / name
    out.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


def test_other_renders_join_training_except_the_held_out_heads(train8, other_render, other_study, tmp_path,
                                                               monkeypatch):
    """The same heads at another protocol: a head of the held-out fold stays out at every protocol,
    the others are trained on at both. A manifest of other heads, or of the same heads in other
    folds, is refused before any model is loaded."""
    import lmmeval.training.recipe as recipe
    from lmmeval.data.manifest import load_manifest

    class Captured(Exception):
        pass

    def capture(records, *args, **kwargs):
        raise Captured([(r.id, str(r.video_path)) for r in records])

    render8 = _render_of(train8, other_render, "render8.jsonl")
    main, render = load_manifest(train8), load_manifest(render8)
    assert [r.id for r in render] == [r.id for r in main] and {r.width for r in render} == {128}
    assert {r.fold for r in main} > {0}  # fold 0 holds some of the 8 heads, not all
    monkeypatch.setattr(recipe, "ManifestData", capture)
    with pytest.raises(Captured) as caught:
        run_stage(_config(1, train8, tmp_path / "s1", base="preset:tiny", fold=0, renders=[str(render8)]),
                  None, progress=False)
    expected = [(r.id, str(r.video_path)) for study in (main, render) for r in study if r.fold != 0]
    assert caught.value.args[0] == expected

    moved = _render_of(train8, other_render, "moved.jsonl", edit=lambda r: r.update(fold=(r["fold"] + 1) % 5))
    strays = _render_of(other_render, other_render, "strays.jsonl")  # all 40 heads, train8 has 8
    for bad, message in ((moved, r"has fold \d, in .*train8.jsonl \d; prepare both renders with the same --folds"),
                         (strays, r"video '\S+' is not in .*train8.jsonl"),
                         (other_study, r"rendered with `lmmeval synth --seed 1`, .* --seed 0 .*not another render")):
        with pytest.raises(ValueError, match=message):
            run_stage(_config(1, train8, tmp_path / "s1b", base="preset:tiny", renders=[str(bad)]),
                      None, progress=False)
    with pytest.raises(ValueError, match="name .*train8.jsonl more than once"):
        run_stage(_config(1, train8, tmp_path / "s1b", base="preset:tiny", renders=[str(train8)]), None, progress=False)
    assert not (tmp_path / "s1b" / "log.csv").exists()


@pytest.mark.slow
def test_zero3_saves_and_resumes(train8, tiny_base, tmp_path):
    """Stage 1 under ZeRO-3 (parameters sharded): the base is created partitioned (no rank holds it
    whole), the final folder is gathered and loads, a resumed run reproduces the losses, and a model
    loaded after the run is whole again."""
    from pathlib import Path

    from lmmeval.training.recipe import StageRecipe, _single_process_env

    zero3 = str(Path(__file__).resolve().parents[1] / "configs" / "deepspeed" / "zero3.json")
    config = dict(base=str(tiny_base), sampling=SAMPLING, steps=4, save_every=2)
    with _single_process_env():
        recipe = StageRecipe(_config(1, train8, tmp_path / "setup", **config), zero3, progress=False)
        recipe.setup_data()
        recipe.setup_model()
        base = [p for n, p in recipe.model.network.backbone.named_parameters() if "lora_" not in n]
        assert base and all(hasattr(p, "ds_id") and p.numel() == 0 for p in base)  # partitioned at creation
        del recipe
    final = run_stage(_config(1, train8, tmp_path / "z3", **config), zero3, progress=False)
    adapter = load_file(final / "adapter_model.safetensors")
    assert adapter and all(v.numel() > 0 for v in adapter.values())  # gathered, not empty shards
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    reloaded = Assessor.from_pretrained(final, device="cpu")
    assert reloaded.config.trained_stages == [1]
    assert not any(hasattr(p, "ds_id") for p in reloaded.model.parameters())  # whole again after the run
    cut = tmp_path / "z3_cut"
    _resume_after_a_kill(tmp_path / "z3", cut, 2, _config(1, train8, cut, **config), zero3)


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).resolve().parents[1].glob("configs/*/stage[123].yaml")))
def test_every_shipped_config_parses(path):
    from lmmeval.training import load_train_config

    config = load_train_config(path)
    assert path.read_text().startswith("# Stage") and "train/stage" in path.read_text().splitlines()[1]
    assert config.stage == int(path.stem[-1])


def test_an_in_process_run_leaves_no_rank_variables_for_a_later_subprocess(train8, tmp_path, monkeypatch):
    """run_stage sets DeepSpeed's rank variables for itself only: left behind, a stage started
    afterwards as a subprocess would inherit them (a notebook or a test suite would see it). Checked on
    the environment itself, unset variables and a user's own value alike, which is what a subprocess
    inherits."""
    import os

    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    for key in keys:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # a user's own value is put back, not removed
    before = {k: os.environ.get(k) for k in keys}
    run_stage(_config(1, train8, tmp_path / "in_process", base="preset:tiny", sampling=SAMPLING, steps=1),
              progress=False)
    assert {k: os.environ.get(k) for k in keys} == before
    assert (tmp_path / "in_process" / "final").is_dir()


def test_a_fresh_run_refuses_an_earlier_runs_checkpoints(train8, tmp_path):
    """Without --resume, checkpoints already in output_dir would be mixed with the new run's
    (and a save would fail renaming onto one): refuse before loading anything, naming them."""
    (tmp_path / "s1" / "checkpoints" / "step00000800").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"s1: holds checkpoints of an earlier run \(step00000800\); pass --resume"):
        run_stage(_config(1, train8, tmp_path / "s1", base="preset:tiny"), None, progress=False)


def test_an_unknown_fold_is_an_error(train8, tmp_path):
    """A fold the manifest does not have would hold out nothing: refuse it, naming the folds."""
    with pytest.raises(ValueError, match=r"no record in fold 7; its folds are \[\d"):
        run_stage(_config(1, train8, tmp_path / "s1", base="preset:tiny", fold=7), None, progress=False)


def test_cross_validation_checks_the_manifest_folds(prepared_manifest, tmp_path):
    from lmmeval.training.crossval import cross_validate

    with pytest.raises(ValueError, match=r"its folds are \[0, 1, 2, 3, 4\], not 0..2"):
        cross_validate(prepared_manifest, tmp_path, folds=3)


@pytest.mark.slow
def test_cross_validation_end_to_end_writes_its_table_and_reruns(prepared_manifest, other_study, other_render,
                                                                tmp_path, capsys):
    """Two folds of 12 videos, 2 steps per stage, a checkpoint every step, plus a disjoint study
    trained on in every stage and the same heads at another protocol: the generated table and its
    JSON land in a folder that did not exist yet, naming the run, with each fold's held-out heads
    scored at both protocols; a rerun into the same work folder (the earlier run's checkpoints
    still in it) starts each fold afresh."""
    import json
    from pathlib import Path

    import yaml

    from lmmeval.training.baseline import BaselineConfig
    from lmmeval.training.crossval import cross_validate

    records = [json.loads(line) for line in prepared_manifest.read_text().splitlines()[:12]]
    for i, r in enumerate(records):
        r["fold"] = i % 2
    manifest = prepared_manifest.parent / "two_folds.jsonl"  # beside the full one: its paths resolve
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    folds = {r["id"]: r["fold"] for r in records}
    render = _render_of(manifest, other_render, "two_folds_128.jsonl", edit=lambda r: r.update(fold=folds[r["id"]]))
    root = Path(__file__).resolve().parents[1]
    configs = []
    for stage in (1, 2, 3):
        data = yaml.safe_load((root / "configs" / "tiny" / f"stage{stage}.yaml").read_text()) | {"save_every": 1}
        configs.append(tmp_path / f"stage{stage}.yaml")
        configs[-1].write_text(yaml.safe_dump(data))
    results = tmp_path / "docs" / "cv.md"
    for _ in range(2):
        out = cross_validate(manifest, tmp_path / "work", folds=2, configs=configs, steps=2,
                             deepspeed=str(root / "configs" / "deepspeed" / "zero2.json"),
                             baseline=BaselineConfig(epochs=1, frames=2), results_md=results, command="cv-test",
                             stage_overrides={3: {"steps": 3}}, extra_train=[other_study], renders=[render])
    assert any((tmp_path / "work" / "fold0" / "stage1" / "checkpoints").glob("step*"))  # what the rerun met
    # The stage override wins over --steps, in that stage only:
    for fold in (0, 1):
        last_steps = [(tmp_path / "work" / f"fold{fold}" / f"stage{s}" / "log.csv").read_text().splitlines()[-1]
                      .split(",")[0] for s in (1, 2, 3)]
        assert last_steps == ["2", "2", "3"]
    per_fold = json.loads(results.with_suffix(".json").read_text())
    assert per_fold["command"] == "cv-test" and [f["assessor"]["n"] for f in per_fold["folds"]] == [6, 6]
    # Each fold's result is written and printed as soon as the fold is done, the same numbers as the table's.
    for k in (0, 1):
        assert json.loads((tmp_path / "work" / f"fold{k}" / "result.json").read_text()) == per_fold["folds"][k]
    quality = per_fold["folds"][1]["assessor"]["quality"]["srcc"]
    assert f"fold 2/2 done: quality SRCC {quality:.3f}, authenticity SRCC" in capsys.readouterr().out
    text = results.read_text()
    assert "on 12 synthetic videos" in text and "`cv-test`" in text and out["table"] in text
    assert (f"LMME3DHF, tiny preset, + 8 training videos of {other_study}, + the training heads' renders in "
            f"{render}, 3.steps=3") in out["table"]
    assert f"stages 1-3 also train on the 8 videos of `{other_study}`, the baseline on each fold's own only" in text
    assert per_fold["extra_train"] == [str(other_study)] and per_fold["renders"] == [str(render)]
    # The held-out heads at 128 px: scored, and compared head by head with their 112-px scores.
    for fold in per_fold["folds"]:
        other = fold["renders"][str(render)]
        assert other["n"] == 6 and other["between"]["n"] == 6 and "predictions" not in other
    row = [line for line in out["table"].splitlines() if line.startswith(f"| `{render}` |")]
    assert len(row) == 1 and len(row[0].split("|")) == 9  # 7 numeric cells
    assert "; stages 1-3 also train on the training heads' renders in" in text
    # Scored again after the run (what render_transfer gives a one-render run): the same models on the
    # same videos reproduce the run's own numbers, at both protocols and between them.
    from research import render_transfer

    assert render_transfer.main(["--cv-work", str(tmp_path / "work"), "--manifest", str(manifest), "--renders",
                                 str(render), "--reference", str(results.with_suffix(".json")),
                                 "--out", str(tmp_path / "transfer")]) == 0
    transfer = json.loads((tmp_path / "transfer.json").read_text())
    for mine, theirs in zip(transfer["folds"], per_fold["folds"], strict=True):
        assert mine["study"] == {d: theirs["assessor"][d]["srcc"] for d in ("quality", "authenticity")}
        # The whole block, saliency included: only the fold's final (stage-3) model reproduces it.
        assert mine["renders"] == theirs["renders"]
    rows = [line for line in (tmp_path / "transfer.md").read_text().splitlines() if "between a head's" in line]
    assert len(rows) == 2  # this run's and the reference's


def test_render_transfer_refuses_a_work_folder_without_fold_models(prepared_manifest, tmp_path, capsys):
    from research import render_transfer

    with pytest.raises(SystemExit) as exit_info:
        render_transfer.main(["--cv-work", str(tmp_path / "cv"), "--manifest", str(prepared_manifest),
                              "--renders", str(prepared_manifest), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'cv' / 'fold0' / 'stage3' / 'final'}: no final model" in capsys.readouterr().err
    assert not (tmp_path / "out.md").exists()


def test_cross_validation_stage_overrides_are_checked_before_any_fold(prepared_manifest, tmp_path):
    from lmmeval.training.crossval import cross_validate, stage_overrides_from

    assert stage_overrides_from(["2.pairwise_weight=0.5", "1.lora={r: 16}", "2.lm_weight=0"]) == \
        {2: {"pairwise_weight": 0.5, "lm_weight": 0}, 1: {"lora": {"r": 16}}}
    for bad in ("pairwise_weight=0.5", "x.steps=1", "2.steps", "2.=1"):
        with pytest.raises(ValueError, match=r"expects STAGE\.KEY=VALUE.*" + re.escape(repr(bad))):
            stage_overrides_from([bad])
    with pytest.raises(ValueError, match="not YAML"):
        stage_overrides_from(["2.lora={r: 8"])
    # steps=1: were a check missing, the run would start and train instead of failing at once.
    for overrides, message in (({2: {"pairwise_wieght": 0.5}}, r"unknown key\(s\) \['pairwise_wieght'\]"),
                               ({2: {"fold": 1}}, r"sets \['fold'\]: cross-validation sets these itself"),
                               ({3: {"extra_manifests": []}}, r"sets \['extra_manifests'\]: cross-validation sets"),
                               ({1: {"base": "tiny"}}, r"sets 'base': pass it as the base argument"),
                               ({4: {"steps": 1}}, "the stages are 1..3"),
                               ({1: {"steps": 0}}, "steps must be an integer >= 1")):
        with pytest.raises(ValueError, match=message):
            cross_validate(prepared_manifest, tmp_path / "work", steps=1, stage_overrides=overrides)
    # Extra training studies: checked against the manifest before any fold, as the stages would.
    twice = f"renders name {re.escape(str(prepared_manifest))} more than once"
    for extra, message in (([prepared_manifest], twice),
                           ([prepared_manifest.parent / "none.jsonl"], "none.jsonl"),
                           ([prepared_manifest] * 2, twice)):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            cross_validate(prepared_manifest, tmp_path / "work", steps=1, extra_train=extra)
    assert not (tmp_path / "work").exists()  # nothing trained


def test_cross_validation_script_reports_bad_arguments_as_usage_errors(prepared_manifest, tmp_path, monkeypatch,
                                                                      capsys):
    """train/cross_validate.py checks every argument before training: each mistake is one usage
    line naming what is wrong (exit status 2), not a traceback, and no fold has started. Its main()
    runs in this process (a subprocess per case would only add interpreter start-ups)."""
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("cross_validate_script", root / "train" / "cross_validate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    missing = prepared_manifest.parent / "none.jsonl"
    for extra, message in ((["--renders", str(prepared_manifest)], "more than once"),
                           (["--extra-train", str(missing)], f"{missing}: no such manifest"),
                           (["--base", str(tmp_path / "no_base")], "no_base: not a folder"),
                           (["--set", "2.pairwise_wieght=0.5"], "pairwise_wieght"),
                           (["--steps", "0"], "steps must be an integer >= 1"),
                           (["--folds", "3"], r"its folds are [0, 1, 2, 3, 4], not 0..2")):
        monkeypatch.setattr(sys, "argv", ["train/cross_validate.py", "--manifest", str(prepared_manifest),
                                          "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results.md"),
                                          "--steps", "1", *extra])
        with pytest.raises(SystemExit) as stopped:
            script.main()
        err = capsys.readouterr().err
        assert stopped.value.code == 2, (extra, err)
        assert message in err and err.startswith("usage: "), (extra, err)
    assert not (tmp_path / "work").exists()  # nothing trained


def test_cross_validation_table_is_mean_and_population_std_over_folds():
    """Hand-worked: folds at 0.8 and 0.9 are 0.850 ± 0.050 (numpy.std, population form); a fold
    where a number is undefined (a constant prediction) is counted in the cell, not dropped silently."""
    from lmmeval.training.crossval import SALIENCY_KEYS, table

    def fold(q, a, exact, cc):
        dim = lambda srcc: {"srcc": srcc, "plcc_fitted": srcc, "krcc": srcc}  # noqa: E731
        return {"assessor": {"quality": dim(q), "authenticity": dim(a), "distortions": {"exact_set_accuracy": exact},
                             "saliency": {k: cc for k in SALIENCY_KEYS}},
                "baseline": {"quality": dim(None), "authenticity": dim(0.1), "distortions": {"exact_set_accuracy": 0.0}}}

    text = table([fold(0.8, 0.5, 0.6, 0.7), fold(0.9, None, 0.8, 0.5)], "ours")
    ours = next(line for line in text.splitlines() if line.startswith("| ours") and "AUC" not in line)
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[1] == "0.850 ± 0.050"                       # quality SRCC
    assert cells[4] == "0.500 ± 0.000 (1/2 folds)"           # authenticity SRCC, one fold undefined
    assert cells[7] == "0.700 ± 0.100"                       # exact-set accuracy
    baseline = next(line for line in text.splitlines() if line.startswith("| MobileNetV3"))
    assert "| n/a |" in baseline and "0.100 ± 0.000" in baseline
    saliency = text.splitlines()[-1]
    assert saliency.startswith("| ours") and saliency.count("0.600 ± 0.100") == len(SALIENCY_KEYS)


def test_load_sampling_reads_the_stage1_block():
    """What the probes and stage 0 sample: the stage-1 config's block, as training reads it."""
    from pathlib import Path

    from lmmeval.training import load_sampling, load_train_config

    configs = Path(__file__).resolve().parents[1] / "configs" / "tiny"
    assert load_sampling(configs / "stage1.yaml") == load_train_config(configs / "stage1.yaml").sampling
    with pytest.raises(ValueError, match=r"stage2.yaml: no 'sampling' block"):
        load_sampling(configs / "stage2.yaml")


@pytest.mark.parametrize("text, message", [
    ("stage: 1\nsteps: [1\n", r"bad.yaml: not valid YAML"),
    ("- stage: 1\n", r"bad.yaml: expected a mapping of keys to values, got list"),
])
def test_config_files_that_are_not_yaml_mappings_name_the_file(tmp_path, text, message):
    """Every config reader (the stages', stage 0's, the sampling block) shares one: same errors."""
    from lmmeval.training import load_sampling, load_train_config
    from lmmeval.training.vision_pretrain import load_vision_pretrain_config

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for read in (load_train_config, load_sampling, load_vision_pretrain_config):
        with pytest.raises(ValueError, match=message):
            read(bad)


def test_epochs_become_steps_hand_worked():
    """steps = ceil(epochs x records / (micro-batch x processes x accumulation)); the warm-up ratio is
    a share of those steps; giving a length or a warm-up two ways at once is an error."""
    base = dict(stage=2, manifest="m", output_dir="o", init_from="x")
    config = TrainConfig(**base, epochs=2, batch_size=2)
    assert config.total_steps(10) == 10  # 2 x 10 / 2
    assert config.total_steps(10, world=2) == 5
    assert TrainConfig(**base, epochs=2, batch_size=2, grad_accum=3).total_steps(10) == 4  # ceil(20 / 6)
    assert TrainConfig(**base, epochs=0.5, batch_size=4).total_steps(3) == 1  # never zero steps
    assert TrainConfig(**base, steps=7).total_steps(1000, world=8) == 7
    assert TrainConfig(**base, steps=40, warmup_ratio=0.05).warmup(40) == 2
    assert TrainConfig(**base, steps=40).warmup(40) == 10 and TrainConfig(**base, steps=40, warmup_steps=3).warmup(40) == 3
    for kw, message in (({"steps": 5, "epochs": 1}, "give one of 'steps' and 'epochs'"),
                        ({}, "give one of 'steps' and 'epochs'"),
                        ({"epochs": 0}, "epochs must be a number > 0"),
                        ({"steps": 5, "warmup_steps": 2, "warmup_ratio": 0.1}, "not both"),
                        ({"steps": 5, "warmup_ratio": 1.5}, r"warmup_ratio must be in \[0, 1\)"),
                        ({"steps": 5, "fold": 1, "split": "eval"}, "hold out a fold or a split, not both")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**(base | kw))


def test_a_command_line_length_replaces_the_files_other_one(tmp_path):
    """`--set steps=10` on a config written in epochs (the 7B configs) replaces its epochs, and the
    other way round; both in the file are an error naming it."""
    from lmmeval.training import load_train_config

    path = tmp_path / "s.yaml"
    path.write_text("stage: 2\nmanifest: m\noutput_dir: o\ninit_from: x\nepochs: 1\nwarmup_ratio: 0.05\n")
    config = load_train_config(path, {"steps": 10, "warmup_steps": 1})
    assert (config.steps, config.epochs, config.warmup_steps, config.warmup_ratio) == (10, None, 1, None)
    assert load_train_config(path).epochs == 1
    path.write_text("stage: 2\nmanifest: m\noutput_dir: o\ninit_from: x\nepochs: 1\nsteps: 4\n")
    with pytest.raises(ValueError, match=r"s.yaml: give one of 'steps' and 'epochs'"):
        load_train_config(path)
    assert load_train_config(path, {"epochs": 2}).steps is None


def test_an_epoch_run_prints_its_steps_and_trains_them(train8, tiny_base, tmp_path, capsys):
    """One epoch of the 8 training videos at micro-batch 4 is 2 steps, printed at the start."""
    config = _config(1, train8, tmp_path / "s1", base=str(tiny_base), sampling=SAMPLING, steps=None, epochs=1,
                     save_every=10)
    run_stage(config, progress=False)
    assert "stage 1: 1 epoch(s) of 8 records = 2 steps (micro-batch 4 x 1 process(es) x accumulation 1)" \
        in capsys.readouterr().out
    assert len(_losses(tmp_path / "s1" / "log.csv")) == 2


def test_one_precision_policy_bfloat16_base_float32_trainables(train8, tiny_base, tmp_path):
    """dtype bfloat16 (what auto gives on a GPU; here on the CPU): the frozen base in bfloat16; LoRA,
    the tiny preset's trained LM-head copy and both heads in float32, the same before and after the
    DeepSpeed engine is set up (its own bf16 switch stays off); one step trains under autocast; the
    saved adapter and heads are float32."""
    from pathlib import Path

    import torch

    from lmmeval.training.recipe import StageRecipe, _single_process_env

    def check(network):
        params = dict(network.named_parameters())
        trainable = {n: p.dtype for n, p in params.items() if p.requires_grad}
        assert trainable and set(trainable.values()) == {torch.float32}, trainable
        assert any("modules_to_save" in n for n in trainable) and any("lora_" in n for n in trainable)
        frozen_base = {p.dtype for n, p in params.items() if not p.requires_grad and n.startswith("backbone.")}
        assert frozen_base == {torch.bfloat16}
        assert {p.dtype for n, p in params.items() if n.startswith(("regression.", "saliency."))} == {torch.float32}

    with _single_process_env():
        zero2 = str(Path(__file__).resolve().parents[1] / "configs" / "deepspeed" / "zero2.json")
        config = _config(1, train8, tmp_path / "s1", base=str(tiny_base), sampling=SAMPLING, steps=1, dtype="bfloat16",
                         lora=LoraSettings(modules_to_save=["lm_head"]))
        recipe = StageRecipe(config, zero2, progress=False)
        recipe.setup_data()
        recipe.setup_model()
        check(recipe.model.network)
        assert recipe.compute_dtype == torch.bfloat16
        recipe.setup_engine()
        assert recipe.ds_config["bf16"] == {"enabled": False}
        check(recipe.model.network)
        recipe.train()
        final = recipe.export()
        for name in ("adapter_model.safetensors", "heads.safetensors"):
            tensors = load_file(final / name)
            assert tensors and {t.dtype for t in tensors.values()} == {torch.float32}, name
    bad = tmp_path / "bf16.json"
    bad.write_text('{"bf16": {"enabled": true}}')
    with pytest.raises(ValueError, match="bf16.enabled is True: leave it false and set the stage config's dtype"):
        run_stage(_config(1, train8, tmp_path / "s1b", base="preset:tiny", steps=1), str(bad), progress=False)


def test_every_final_folder_records_what_its_stages_trained_on(stages, train8, tiny_base, tmp_path):
    """training_data.json: stage 3's record holds the one study all three stages trained on (its synth
    seed, what was held out, the ids and SHA-1 of the 8 videos, hashed here), and says that the base
    stage 1 started from records nothing. A stage starting from a model with a record puts that
    record's studies first (here a base whose record says stage 0 trained on a seed-1 study)."""
    import hashlib
    import json

    from lmmeval.data.manifest import load_manifest
    from lmmeval.training.recipe import StageRecipe

    _, finals = stages
    records = load_manifest(train8)
    record = json.loads((finals[3] / "training_data.json").read_text())
    [study] = record["studies"]
    assert study["manifest"] == str(train8) and study["stages"] == [1, 2, 3]
    assert study["synth"]["seed"] == 0 and study["synth"]["n"] == 40
    assert study["held_out"] == {"fold": -1, "split": None} and study["videos"] == 8
    assert study["ids"] == sorted(r.id for r in records)
    assert study["sha1"] == sorted(hashlib.sha1(r.video_path.read_bytes()).hexdigest() for r in records)
    assert record["incomplete"] == [f"{tiny_base} (stage 1's base) has no training_data.json: what it was trained "
                                    "on is not recorded"]
    assert json.loads((finals[1] / "training_data.json").read_text())["studies"][0]["stages"] == [1]

    base = tmp_path / "base"
    base.mkdir()
    stage0 = {"manifest": "corpus/manifest.jsonl", "role": "corpus", "stages": [0], "synth": {"seed": 1, "n": 8},
              "held_out": {"fold": -1, "split": None}, "videos": 8, "ids": ["x"], "sha1": ["0" * 40]}
    (base / "training_data.json").write_text(json.dumps({"format": 1, "studies": [stage0], "incomplete": []}))
    recipe = StageRecipe(_config(1, train8, tmp_path / "s1", base=str(base), fold=0), progress=False)
    recipe.setup_data()
    merged = recipe.training_record()
    assert merged["studies"][0] == stage0 and merged["incomplete"] == []
    assert merged["studies"][1]["held_out"] == {"fold": 0, "split": None}
    assert merged["studies"][1]["ids"] == sorted(r.id for r in records if r.fold != 0)


def test_a_resume_checkpoint_not_written_by_this_recipe_is_refused(stages, train8, tmp_path):
    """DeepSpeed's loader unpickles a resumable checkpoint's files: one changed since it was written,
    one without the recipe's SHA-256 manifest, one with a file the manifest does not list, and a
    `latest` naming a folder outside the checkpoints are refused before any model is loaded."""
    root, finals = stages
    tag = "step00000005"
    config = _config(2, train8, tmp_path / "cut", init_from=str(finals[1]), lr=1e-3, pairwise_weight=0.5)

    def resume_from(edit, message):
        cut = tmp_path / "cut"
        shutil.rmtree(cut, ignore_errors=True)
        shutil.copytree(root / "s2" / "checkpoints" / tag, cut / "checkpoints" / tag)
        (cut / "checkpoints" / "latest").write_text(tag)
        edit(cut / "checkpoints")
        with pytest.raises(ValueError, match=message):
            run_stage(config, resume=True, progress=False)
        assert not (cut / "log.csv").exists()

    def tamper(ckpts):
        with open(ckpts / tag / "mp_rank_00_model_states.pt", "ab") as f:
            f.write(b"\0")

    resume_from(tamper, rf"{tag}: refusing to resume from it \(DeepSpeed unpickles its files\): "
                        r"mp_rank_00_model_states.pt changed since the checkpoint was written")
    resume_from(lambda ckpts: (ckpts / tag / "resume_manifest.json").unlink(),
                r"it has no resume_manifest.json, so it was not written by this training recipe")
    resume_from(lambda ckpts: (ckpts / tag / "extra.pt").write_bytes(b"\x80"), r"not listed: \['extra.pt'\]")
    resume_from(lambda ckpts: (ckpts / "latest").write_text("../elsewhere"), r"names '../elsewhere', not a checkpoint")
