r"""Stage 3 ablations on a finished cross-validation: retrain only the saliency decoder of every fold.

Stages 1 and 2 do not touch the saliency decoder, so a stage-3 change can be measured on the very
stage-2 models a cross-validation already trained (``<work>/fold<k>/stage2/final``): each fold's
stage 3 is trained again with ``--set`` overrides and its held-out saliency scored, and the table
sets it against that cross-validation's own per-fold numbers (``--reference``, its
``results.json``). The folds' models differ in the stage-3 change alone, so the per-fold
differences are paired.

    python -m research.stage3_ablation --cv-work runs/cv --manifest runs/cv/prepared/manifest.jsonl \
        --reference docs/results/cv/results.json --set saliency_vision_depths=[0,1,2] --steps 1000 \
        --work runs/cv_depths --out docs/results/cv_vision_depths
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from lmmeval.provenance import git_commit

METRICS = ("cc", "auc_judd", "nss", "sim", "kld")


def run(cv_work: Path, manifest: Path, overrides: dict, work: Path, config: Path, deepspeed: str | None,
        only: list[int] | None = None) -> list[dict]:
    from lmmeval.data.manifest import load_manifest
    from lmmeval.eval.evaluate import evaluate
    from lmmeval.inference.assessor import Assessor
    from lmmeval.training import load_train_config
    from lmmeval.training.recipe import run_stage

    records = load_manifest(manifest)
    folds = sorted({r.fold for r in records} if only is None else only)
    starts = {k: cv_work / f"fold{k}" / "stage2" / "final" for k in folds}
    for start in starts.values():  # every fold checked before the first one trains
        if not (start / "config.json").is_file():
            raise ValueError(f"{start}: no stage-2 checkpoint (is {cv_work} the --work of a finished cross-validation?)")
    results = []
    for k, start in starts.items():
        out = work / f"fold{k}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = load_train_config(config, {"manifest": str(manifest), "output_dir": str(out / "stage3"), "fold": k,
                                         "split": None, "init_from": str(start), **overrides})
        final = run_stage(cfg, deepspeed, progress=False)
        report = evaluate(Assessor.from_pretrained(final), [r for r in records if r.fold == k], progress=False)
        results.append({"fold": k, "saliency": report["saliency"]})
        print(f"fold {k}: saliency CC {report['saliency']['cc']:.3f}", flush=True)
    return results


def reference_saliency(path: Path, folds: list[int]) -> dict[int, dict]:
    """Per fold, the saliency numbers of a cross-validation's ``results.json`` (its ``folds`` list
    is in fold order); checked before any training, so a wrong file fails at once."""
    try:
        entries = json.loads(Path(path).read_text())["folds"]
        found = {k: entries[k]["assessor"]["saliency"] for k in folds if k < len(entries)}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a cross-validation's results.json ({err!r})") from err
    missing = [k for k in folds if k not in found]
    if missing:
        raise ValueError(f"{path}: no results for fold(s) {missing} (it has {len(entries)} folds)")
    return found


def write(results: list[dict], reference: dict[int, dict], out: Path, command: str, overrides: dict,
          commit: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ref = [reference[r["fold"]] for r in results]
    new = [r["saliency"] for r in results]
    (out / "results.json").write_text(json.dumps({"command": command, "commit": commit, "overrides": overrides,
                                                  "folds": results}, indent=1))
    label = ", ".join(f"{k}={v}" for k, v in overrides.items())
    lines = [f"# Stage 3 ablation: {label}", "",
             f"`{command}` at commit `{commit}`. Stage 3 retrained on each fold's stage-2 model of the "
             "reference cross-validation; saliency on the held-out fold (mean ± std over folds).", "",
             "| decoder | " + " | ".join(METRICS) + " |", "| --- |" + " --- |" * len(METRICS)]
    for name, rows in (("reference (the cross-validation's own stage 3)", ref), (label, new)):
        cells = [f"{np.mean([r[m] for r in rows]):.3f} ± {np.std([r[m] for r in rows]):.3f}" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    diffs = [n["cc"] - r["cc"] for n, r in zip(new, ref)]
    lines += ["", "Per fold, CC change against the reference: " + ", ".join(f"{d:+.3f}" for d in diffs)
              + f" (mean {np.mean(diffs):+.3f}; fold-to-fold std of the reference {np.std([r['cc'] for r in ref]):.3f})."]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv-work", required=True, type=Path, help="the finished cross-validation's --work")
    parser.add_argument("--manifest", required=True, type=Path, help="its manifest")
    parser.add_argument("--reference", required=True, type=Path, help="its per-fold results (results.json)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="stage-3 config overrides (YAML values)")
    parser.add_argument("--steps", type=int, help="stage 3's steps (as the cross-validation's --steps)")
    parser.add_argument("--config", type=Path, default=Path("configs/tiny/stage3.yaml"))
    parser.add_argument("--deepspeed", default="configs/deepspeed/zero2.json")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="report folder (results.md, results.json)")
    parser.add_argument("--folds", type=int, nargs="+", help="only these folds (default: all)")
    args = parser.parse_args(argv)
    from lmmeval.training import parse_overrides

    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    if args.steps:
        overrides["steps"] = args.steps
    from lmmeval.data.manifest import load_manifest

    try:
        folds = args.folds or sorted({r.fold for r in load_manifest(args.manifest)})
        reference = reference_saliency(args.reference, folds)
        results = run(args.cv_work, args.manifest, overrides, args.work, args.config, args.deepspeed, folds)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    command = "python -m research.stage3_ablation " + " ".join(argv if argv is not None else sys.argv[1:])
    write(results, reference, args.out, command, overrides, git_commit())
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
