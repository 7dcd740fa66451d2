"""K-fold cross-validation of the assessor and the CNN baseline, in the paper's table layout.

For each fold: the three training stages on the other folds (configs/tiny/*.yaml,
in this process, under DeepSpeed), `evaluate` on the held-out fold, and the
baseline trained and tested on the same split. Mean +- std over folds go to a
Markdown table (``docs/results/cv/results.md`` with ``make cv``; ``docs/results.md`` reads it) and a
JSON file next to it. The table file is generated whole, so nothing hand-written goes in it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.manifest import Record, check_disjoint, check_same_study, load_manifest, synth_seed
from ..eval.evaluate import evaluate, render_agreement, score_report, scores_by_id
from ..inference.assessor import Assessor
from ..labels import DIMENSIONS
from ..provenance import git_commit
from .config import load_train_config, parse_overrides
from .recipe import run_stage
from .baseline import BaselineConfig, predict_baseline, train_baseline

SALIENCY_KEYS = ("auc_judd", "nss", "cc", "sim", "kld")


# Keys each fold sets itself: a stage override may not change them.
FOLD_KEYS = ("manifest", "output_dir", "fold", "split", "init_from", "extra_manifests", "renders")
DEFAULT_CONFIGS = ("configs/tiny/stage1.yaml", "configs/tiny/stage2.yaml", "configs/tiny/stage3.yaml")


def _model_name(stage1_config: Path) -> str:
    """What the table calls the model: its stage-1 base ("tiny preset" for preset:tiny)."""
    base = str(load_train_config(stage1_config, {"steps": 1}).base)
    return f"{base.removeprefix('preset:')} preset" if base.startswith("preset:") else Path(base).name


def stage_overrides_from(items: list[str]) -> dict[int, dict]:
    """``["2.pairwise_weight=0.5", "1.steps=500"]`` -> {2: {"pairwise_weight": 0.5}, 1: {"steps": 500}}."""
    out: dict[int, dict] = {}
    for item in items:
        stage, dot, rest = item.partition(".")
        key, eq, _ = rest.partition("=")
        if not dot or not stage.isdigit() or not key or not eq:
            raise ValueError(f"--set expects STAGE.KEY=VALUE (e.g. 2.pairwise_weight=0.5), got {item!r}")
        out.setdefault(int(stage), {}).update(parse_overrides([rest]))
    return out


def run_fold(manifest: Path, records: list[Record], fold: int, work: Path, configs: list[Path], deepspeed: str | None,
             steps: int | None, baseline: BaselineConfig, base: str | None = None,
             stage_overrides: dict[int, dict] | None = None, extra_train: list[str] | None = None,
             renders: dict[str, list[Record]] | None = None) -> dict:
    """``records``: the manifest's, as ``load_manifest`` read them (the stages read the file themselves).
    ``stage_overrides``: {stage: {key: value}} applied to that stage's config after ``steps``.
    ``extra_train``: manifests every stage also trains on whole (not the baseline).
    ``renders``: {manifest: records} of the same study at other protocols, trained on with the
    manifest and tested on the same held-out heads (not by the baseline)."""
    renders = renders or {}
    # The fold's folder is scratch space: a rerun starts it afresh (training refuses to mix
    # its checkpoints with an earlier run's).
    shutil.rmtree(work, ignore_errors=True)
    final = None
    for stage, cfg_path in enumerate(configs, start=1):
        # The fold is held out, not an official split the config may name (the 7B configs hold out "eval").
        overrides = {"manifest": str(manifest), "output_dir": str(work / f"stage{stage}"), "fold": fold,
                     "split": None, "extra_manifests": list(extra_train or []), "renders": list(renders)}
        if stage == 1 and base:
            overrides["base"] = str(base)
        if stage > 1:
            overrides["init_from"] = str(final)
        if steps is not None:
            overrides["steps"] = steps
        overrides |= (stage_overrides or {}).get(stage, {})
        final = run_stage(load_train_config(cfg_path, overrides), deepspeed, progress=False)
    test = [r for r in records if r.fold == fold]
    train = [r for r in records if r.fold != fold]
    assessor = Assessor.from_pretrained(final)  # on the GPU where there is one
    report = evaluate(assessor, test, progress=False)
    other = score_renders(assessor, report, renders, fold, progress=False)
    # The baseline sees the frames the assessor sees: its sampling, in its patch geometry.
    sampling, geometry = assessor.config.sampling, assessor.parts.geometry
    model = train_baseline(train, sampling, geometry, baseline)
    scores, categories = predict_baseline(model, test, sampling, geometry, baseline)
    base = {}
    for j, dim in enumerate(DIMENSIONS):
        mos = [r.mos[dim] for r in test]
        base[dim] = score_report(scores[:, j], mos)
    labelled = [(c, r) for c, r in zip(categories, test) if r.labelled]
    base["distortions"] = {"exact_set_accuracy": float(np.mean([sorted(c) == sorted(r.categories) for c, r in labelled]))
                           if labelled else None}
    return {"assessor": report, "baseline": base, "renders": other}


def score_renders(assessor: Assessor, report: dict, renders: dict[str, list[Record]], fold: int,
                  progress: bool = True) -> dict:
    """The held-out heads of ``fold`` at each other protocol (``renders``: {manifest: records}): the
    ``evaluate`` report of their scores there (without the predictions), and under ``between`` how
    well they agree with the same heads' scores in ``report`` (the fold's report at the study's
    protocol, with its predictions)."""
    other = {}
    for path, render_records in renders.items():
        other[path] = evaluate(assessor, [r for r in render_records if r.fold == fold], progress=progress)
        other[path]["between"] = render_agreement(scores_by_id(report), scores_by_id(other[path]))
        other[path].pop("predictions")
    return other


def fold_summary(result: dict) -> str:
    """One line of a fold's headline numbers (``run_fold``'s result); n/a where undefined."""
    def num(value, scale=1.0, digits=3):
        return "n/a" if value is None else f"{scale * value:.{digits}f}"

    a, b = result["assessor"], result["baseline"]
    line = (f"quality SRCC {num(a['quality']['srcc'])}, authenticity SRCC {num(a['authenticity']['srcc'])}, "
            f"exact-set {num(a['distortions']['exact_set_accuracy'], 100, 1)} %")
    if "saliency" in a:
        line += f", saliency CC {num(a['saliency']['cc'])}"
    line += f" (baseline SRCC {num(b['quality']['srcc'])} / {num(b['authenticity']['srcc'])})"
    for path, r in result.get("renders", {}).items():
        line += (f"; {path}: SRCC {num(r['quality']['srcc'])} / {num(r['authenticity']['srcc'])}, between renders "
                 f"{num(r['between']['quality']['srcc'])} / {num(r['between']['authenticity']['srcc'])}")
    return line


def mean_std(values: list[float]) -> str:
    """'mean ± std' over folds; folds where the number is undefined (e.g. a constant prediction) are counted."""
    defined = [v for v in values if v is not None]
    if not defined:
        return "n/a"
    text = f"{np.mean(defined):.3f} ± {np.std(defined):.3f}"
    return text if len(defined) == len(values) else f"{text} ({len(defined)}/{len(values)} folds)"


def table(folds: list[dict], assessor_label: str = "LMME3DHF, tiny preset") -> str:
    lines = ["| method | quality SRCC | quality PLCC | quality KRCC | authenticity SRCC | authenticity PLCC "
             "| authenticity KRCC | distortion exact-set acc. |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, label in (("baseline", "MobileNetV3-S frames, from scratch"), ("assessor", assessor_label)):
        cells = [mean_std([f[name][dim][k] for f in folds]) for dim in DIMENSIONS for k in ("srcc", "plcc_fitted", "krcc")]
        cells.append(mean_std([f[name]["distortions"]["exact_set_accuracy"] for f in folds]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "PLCC after a 4-parameter logistic fit of predictions onto MOS (raw PLCC in the JSON file).", "",
              "| method | AUC-Judd | NSS | CC | SIM | KLD |", "| --- | --- | --- | --- | --- | --- |",
              f"| {assessor_label} | " + " | ".join(mean_std([f["assessor"]["saliency"][k] for f in folds])
                                                   for k in SALIENCY_KEYS) + " |"]
    renders = folds[0].get("renders", {})  # every fold has the same ones
    if renders:
        lines += ["", "The held-out heads rendered at another protocol (`renders`): the SRCC of their scores there, "
                  "and between a head's two renders the SRCC of its scores and the mean shift (other render minus "
                  "the manifest's, MOS points).", "",
                  "| render | quality SRCC | authenticity SRCC | between renders: quality SRCC | authenticity SRCC "
                  "| quality mean shift | authenticity mean shift |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for path in renders:
            per = [f["renders"][path] for f in folds]
            cells = [mean_std([r[dim]["srcc"] for r in per]) for dim in DIMENSIONS]
            cells += [mean_std([r["between"][dim]["srcc"] for r in per]) for dim in DIMENSIONS]
            cells += [mean_std([r["between"][dim]["mean_shift"] for r in per]) for dim in DIMENSIONS]
            lines.append(f"| `{path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class CrossValidationPlan:
    """A cross-validation's inputs, read and checked before the first fold trains (a mistake
    should surface in a second, not an hour in)."""
    manifest: Path
    records: list[Record]
    folds: int
    configs: list[Path]
    stage_overrides: dict[int, dict]
    extra_train: dict[str, list[Record]]   # {manifest: records} of the studies also trained on whole
    renders: dict[str, list[Record]]       # {manifest: records} of the study at other protocols
    base: Path | None                      # stage 1's base in place of the config's
    steps: int | None                      # every stage's steps in place of the configs' (then the overrides)
    results_md: Path | None                # the table; its per-fold JSON goes next to it


def plan_cross_validation(manifest: str | Path, folds: int = 5, configs: list[str] | None = None,
                          stage_overrides: dict[int, dict] | None = None, extra_train: list[str] | None = None,
                          renders: list[str] | None = None, base: str | Path | None = None,
                          results_md: str | Path | None = None, steps: int | None = None) -> CrossValidationPlan:
    """Read the manifests and check every argument of ``cross_validate`` (same meanings); raises
    ValueError (or FileNotFoundError) naming the argument or file at fault."""
    configs = [Path(c) for c in (configs or DEFAULT_CONFIGS)]
    if len(configs) != 3:
        raise ValueError(f"cross-validation runs the three stages: give three stage configs, got {len(configs)}")
    stage_overrides = stage_overrides or {}
    for stage, keys in stage_overrides.items():
        if stage not in range(1, len(configs) + 1):
            raise ValueError(f"stage override for stage {stage}: the stages are 1..{len(configs)}")
        if fixed := sorted(set(keys) & set(FOLD_KEYS)):
            raise ValueError(f"stage {stage} override sets {fixed}: cross-validation sets these itself per fold")
        if "base" in keys:  # it would silently win over `base`, which names the run in the table
            raise ValueError(f"stage {stage} override sets 'base': pass it as the base argument (--base)")
    for stage, config in enumerate(configs, start=1):  # bad steps, keys and values fail now, not in fold 1
        load_train_config(config, ({"steps": steps} if steps is not None else {}) | stage_overrides.get(stage, {}))
    if base is not None and not Path(base).is_dir():
        raise ValueError(f"base {base}: not a folder (a Qwen2.5-VL base, e.g. train/stage0_vision.py's --out)")
    manifest = Path(manifest)
    records = load_manifest(manifest)
    present = sorted({r.fold for r in records})
    if present != list(range(folds)):
        raise ValueError(f"{manifest}: its folds are {present}, not 0..{folds - 1}; prepare it with --folds {folds} "
                         f"or pass --folds {len(present)}")
    extra_train = [str(path) for path in extra_train or []]
    renders = [str(path) for path in renders or []]
    # The stages' own checks (a manifest named twice), now, not in each fold's stage 1.
    load_train_config(configs[0], {"manifest": str(manifest), "extra_manifests": extra_train, "renders": renders})
    extra_records = {path: load_manifest(path) for path in extra_train}
    check_disjoint(manifest, records, extra_records)
    render_records = {path: load_manifest(path) for path in renders}
    for path, others in render_records.items():
        check_same_study(manifest, records, path, others)
    if results_md:  # made now: a folder that cannot be made should fail before the folds, not after
        Path(results_md).parent.mkdir(parents=True, exist_ok=True)
    return CrossValidationPlan(manifest, records, folds, configs, stage_overrides, extra_records, render_records,
                               Path(base) if base is not None else None, steps,
                               Path(results_md) if results_md else None)


def cross_validate(manifest: str | Path, work: str | Path, folds: int = 5, configs: list[str] | None = None,
                   deepspeed: str | None = "configs/deepspeed/zero2.json", steps: int | None = None,
                   baseline: BaselineConfig = BaselineConfig(), results_md: str | Path | None = None,
                   command: str = "", base: str | Path | None = None,
                   stage_overrides: dict[int, dict] | None = None, extra_train: list[str] | None = None,
                   renders: list[str] | None = None) -> dict:
    """``base`` replaces stage 1's base (e.g. the tiny base with stage 0's pretrained vision tower).
    ``stage_overrides`` ({stage: {key: value}}) change the stage configs for every fold: ablations
    such as {2: {"pairwise_weight": 0.5}}. ``extra_train``: more studies (manifests) that every
    stage of every fold also trains on whole, e.g. stage 0's corpus; they must be disjoint from
    ``manifest``. ``renders``: the same study rendered at other protocols (`lmmeval synth` with its
    seed, prepared with its folds): every stage trains on the training heads' renders too, and each
    fold is also tested on its held-out heads' renders (robustness to the render protocol). The
    baseline keeps to each fold's training videos of ``manifest``."""
    plan = plan_cross_validation(manifest, folds, configs, stage_overrides, extra_train, renders, base, results_md,
                                 steps)
    return run_cross_validation(plan, work, deepspeed, baseline, command)


def run_cross_validation(plan: CrossValidationPlan, work: str | Path,
                         deepspeed: str | None = "configs/deepspeed/zero2.json",
                         baseline: BaselineConfig = BaselineConfig(), command: str = "") -> dict:
    """Train and evaluate every fold of a checked ``plan`` (``cross_validate`` has the arguments)."""
    manifest, records, folds, configs = plan.manifest, plan.records, plan.folds, plan.configs
    stage_overrides, renders = plan.stage_overrides, plan.renders
    extra_train, n_extra = list(plan.extra_train), sum(len(r) for r in plan.extra_train.values())
    base, results_md, steps = plan.base, plan.results_md, plan.steps
    work = Path(work)
    start, commit = time.time(), git_commit()
    results = []
    for k in range(folds):
        print(f"fold {k + 1}/{folds}", flush=True)
        result = run_fold(manifest, records, k, work / f"fold{k}", configs, deepspeed, steps, baseline, base,
                          stage_overrides, extra_train, renders)
        result["assessor"].pop("predictions", None)
        # Each fold's numbers as soon as it is done (a full run takes the better part of an hour).
        (work / f"fold{k}" / "result.json").write_text(json.dumps(result, indent=2))
        print(f"fold {k + 1}/{folds} done: {fold_summary(result)}", flush=True)
        results.append(result)
    label = f"LMME3DHF, {_model_name(configs[0])}" + (f", base {base}" if base else "")
    if extra_train:
        label += f", + {n_extra} training videos of {' + '.join(extra_train)}"
    if renders:
        label += f", + the training heads' renders in {' + '.join(renders)}"
    label += "".join(f", {stage}.{k}={v}" for stage, keys in sorted(stage_overrides.items()) for k, v in keys.items())
    out = {"folds": results, "table": table(results, label), "base": str(base) if base else None,
           "extra_train": extra_train, "renders": list(renders),
           "minutes": (time.time() - start) / 60, "command": command, "commit": commit}
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.json").write_text(json.dumps(out, indent=2))
    if results_md:
        # The per-fold numbers travel with the table (the work folder is scratch space).
        per_fold = Path(results_md).with_suffix(".json")
        per_fold.write_text(json.dumps(out, indent=2))
        tower = f"stage 1's base `{base}`" if base else "the base's own vision tower"
        if extra_train:
            tower += (f"; stages 1-3 also train on the {n_extra} videos of "
                      f"{' + '.join(f'`{path}`' for path in extra_train)}, the baseline on each fold's own only")
        if renders:
            tower += (f"; stages 1-3 also train on the training heads' renders in "
                      f"{' + '.join(f'`{path}`' for path in renders)} and are tested on the held-out heads' too")
        synthetic = synth_seed(manifest) is not None  # rendered by `lmmeval synth`, folds by generator
        title = "on the synthetic benchmark" if synthetic else f"on {manifest}"
        device = "GPU" if torch.cuda.is_available() else "CPU"
        Path(results_md).write_text(
            f"# Cross-validation {title} (generated)\n\n"
            f"{folds}-fold cross-validation ({'folds stratified by generator' if synthetic else 'the manifest folds'})"
            f" on {len(records)} {'synthetic ' if synthetic else ''}videos, {_model_name(configs[0])}, {tower}, "
            f"{device}. Produced by `{command}` "
            f"starting at commit `{out['commit']}`, in {out['minutes']:.0f} minutes; per-fold numbers in "
            f"`{per_fold}`. Written whole by the command; the discussion is in `docs/results.md`.\n\n{out['table']}\n")
    return out
