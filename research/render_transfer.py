r"""Score a finished cross-validation's fold models on other renders of their held-out heads.

`make cv` trains every fold on one render of the study; `make cv-renders` on two, and tests its
folds at both protocols as it goes. This gives `make cv`'s side of that comparison after the fact:
each fold's final model (``<work>/fold<k>/stage3/final``) scores its held-out heads at the study's
protocol and at each other render's, with the agreement between a head's two scores (the same
``score_renders`` the cross-validation runs). With ``--reference`` (another cross-validation's
results JSON with those renders, e.g. `make cv-renders`'), its numbers are set alongside.

    python -m research.render_transfer --cv-work runs/cv --manifest runs/cv/prepared/manifest.jsonl \
        --renders runs/cv512/prepared/manifest.jsonl --reference docs/results/cv_renders/results.json \
        --out docs/results/cv_one_render/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmmeval.labels import DIMENSIONS
from lmmeval.provenance import git_commit


def fold_model(cv_work: Path, fold: int) -> Path:
    """A finished cross-validation's model for ``fold`` (its last stage's final checkpoint)."""
    return cv_work / f"fold{fold}" / "stage3" / "final"


def run(cv_work: Path, manifest: Path, renders: list[Path], progress: bool = True) -> list[dict]:
    """Per fold: {"fold", "study": {dim: srcc}, "renders": {path: score_renders' block}}."""
    from lmmeval.data.manifest import check_same_study, load_manifest
    from lmmeval.eval.evaluate import evaluate
    from lmmeval.inference.assessor import Assessor
    from lmmeval.training.crossval import score_renders

    records = load_manifest(manifest)
    others = {str(path): load_manifest(path) for path in renders}
    for path, render_records in others.items():
        check_same_study(manifest, records, path, render_records)
    folds = sorted({r.fold for r in records})
    for k in folds:  # every fold checked before the first is scored
        if not (fold_model(cv_work, k) / "config.json").is_file():
            raise ValueError(f"{fold_model(cv_work, k)}: no final model (is {cv_work} the --work of a finished "
                             f"cross-validation of {manifest}?)")
    results = []
    for k in folds:
        assessor = Assessor.from_pretrained(fold_model(cv_work, k))
        report = evaluate(assessor, [r for r in records if r.fold == k], progress=progress)
        results.append({"fold": k, "study": {dim: report[dim]["srcc"] for dim in DIMENSIONS},
                        "renders": score_renders(assessor, report, others, k, progress)})
        print(f"fold {k}: " + "; ".join(
            f"{path}: quality / authenticity SRCC "
            + " / ".join("n/a" if block[d]["srcc"] is None else f"{block[d]['srcc']:.3f}" for d in DIMENSIONS)
            for path, block in results[-1]["renders"].items()), flush=True)
    return results


def reference_rows(path: Path, renders: list[str], folds: list[int]) -> list[dict]:
    """The same per-fold numbers from a cross-validation's results JSON that tested on ``renders``."""
    try:
        entries = json.loads(Path(path).read_text())["folds"]
        rows = [{"fold": k, "study": {d: entries[k]["assessor"][d]["srcc"] for d in DIMENSIONS},
                 "renders": {r: entries[k]["renders"][r] for r in renders}} for k in folds]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path}: not the results JSON of a cross-validation with folds {folds} tested on "
                         f"{renders} ({err!r})") from err
    return rows


def table(runs: dict[str, list[dict]], renders: list[str]) -> str:
    """Mean ± std over folds of each run (``{label: per-fold rows}``): SRCC at each protocol, and
    between a head's two scores."""
    from lmmeval.training.crossval import mean_std

    lines = ["| training renders | held-out heads | quality SRCC | authenticity SRCC | quality mean shift |",
             "| --- | --- | --- | --- | --- |"]
    for label, rows in runs.items():
        lines.append(f"| {label} | the study's render | "
                     + " | ".join(mean_std([r["study"][d] for r in rows]) for d in DIMENSIONS) + " | |")
        for path in renders:
            lines.append(f"| {label} | `{path}` | "
                         + " | ".join(mean_std([r["renders"][path][d]["srcc"] for r in rows]) for d in DIMENSIONS)
                         + " | |")
            between = [r["renders"][path]["between"] for r in rows]
            shift = sum(b["quality"]["mean_shift"] for b in between) / len(between)
            lines.append(f"| {label} | between a head's two renders | "
                         + " | ".join(mean_std([b[d]["srcc"] for b in between]) for d in DIMENSIONS)
                         + f" | {shift:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv-work", required=True, type=Path, help="the finished cross-validation's --work")
    parser.add_argument("--manifest", required=True, type=Path, help="its manifest (the study)")
    parser.add_argument("--renders", required=True, nargs="+", type=Path, metavar="MANIFEST",
                        help="the same study at other protocols (same synth --seed, same prepare --folds)")
    parser.add_argument("--reference", type=Path,
                        help="another cross-validation's results JSON tested on the same renders, set alongside")
    parser.add_argument("--out", required=True, type=Path, help="report prefix: writes OUT.md and OUT.json")
    args = parser.parse_args(argv)
    renders = [str(path) for path in args.renders]
    commit = git_commit()  # when the run starts: the code it imports then is the code it runs
    try:
        results = run(args.cv_work, args.manifest, args.renders)
        runs = {f"one (`{args.cv_work}`)": results}
        if args.reference:
            runs[f"the study's and these (`{args.reference}`)"] = reference_rows(
                args.reference, renders, [r["fold"] for r in results])
    except (ValueError, OSError) as err:
        parser.error(str(err))
    command = "python -m research.render_transfer " + " ".join(
        argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"command": command, "commit": commit, "cv_work": str(args.cv_work), "renders": renders,
         "reference": str(args.reference) if args.reference else None, "folds": results}, indent=1))
    text = (f"# A cross-validation's fold models on other renders of their held-out heads (generated)\n\n"
            f"`{command}` at commit `{commit}`; per-fold numbers in `{args.out.with_suffix('.json')}`. "
            f"SRCC against each render's MOS, mean ± std over folds; \"between\": SRCC between a held-out "
            f"head's two scores, and the mean shift of its quality score (other render minus the study's).\n\n"
            f"{table(runs, renders)}\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
