r"""Stage 0 of the tiny preset: distil a CNN into its Qwen2.5-VL vision tower (lmmeval/training/vision_pretrain.py).

Trains a ResNet-18 teacher on the corpus's study labels, then the tiny base's vision
tower on the teacher's per-token feature maps (plus the labels), and writes the tiny
base with that tower to --out, ready to be stage 1's `base`. With --eval-manifest (a
disjoint study), both are scored on it after every epoch.

    python train/stage0_vision.py --config configs/tiny/stage0_vision.yaml \
        --manifest runs/pretrain/prepared/manifest.jsonl runs/pretrain2/prepared/manifest.jsonl \
        --out runs/pretrain/base [--eval-manifest runs/cv/prepared/manifest.jsonl] [--report docs/results/vision_pretrain/vision_pretrain]
"""

import argparse
import json
import sys
from pathlib import Path

from lmmeval.training.encoders import plot_curves
from lmmeval.training.vision_pretrain import load_corpus, load_vision_pretrain_config, pretrain_vision
from lmmeval.provenance import git_commit
from lmmeval.training import load_sampling

TINY_STAGE1 = Path(__file__).resolve().parent.parent / "configs" / "tiny" / "stage1.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny/stage0_vision.yaml", help="VisionPretrainConfig YAML")
    parser.add_argument("--manifest", required=True, nargs="+",
                        help="the pretraining corpus: one or more manifest.jsonl of `lmmeval prepare` (joined)")
    parser.add_argument("--out", required=True, help="folder for the base with the pretrained tower")
    parser.add_argument("--eval-manifest", help="a disjoint study to score teacher and student on after each epoch")
    parser.add_argument("--report", help="also write PREFIX.json, PREFIX.md and PREFIX.png (per-epoch curves)")
    args = parser.parse_args()

    try:
        config = load_vision_pretrain_config(args.config)
        corpus, eval_records = load_corpus(args.manifest, args.eval_manifest)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    commit = git_commit()
    sampling = load_sampling(TINY_STAGE1)  # the tower learns on what stage 1 will feed it
    report = pretrain_vision(corpus, sampling, args.out, config, eval_records, corpus_manifests=args.manifest)
    report |= {"command": "python train/stage0_vision.py " + " ".join(sys.argv[1:]), "commit": commit,
               "manifest": args.manifest, "eval_manifest": args.eval_manifest}
    (Path(args.out) / "vision_pretrain.json").write_text(json.dumps(report, indent=2))
    if args.report:
        _write_report(report, Path(args.report))
    for name in ("teacher", "student"):
        print(name, json.dumps(report[name][-1]))
    return 0


def _write_report(report: dict, prefix: Path) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=2))
    rows = ["| model | epochs | quality SRCC | authenticity SRCC | distortion exact-set acc. | minutes |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, label in (("teacher", "ResNet-18 teacher"), ("student", "tiny Qwen2.5-VL vision tower, distilled")):
        last = report[name][-1]
        cells = [last.get(k) for k in ("quality_srcc", "authenticity_srcc", "exact_set_accuracy")]
        cells = " | ".join("n/a" if c is None else f"{c:.3f}" for c in cells)
        rows.append(f"| {label} | {last['epoch']} | {cells} | {last['minutes']:.1f} |")
    held_out = (f"scored on {report['n_eval']} videos of `{report['eval_manifest']}`" if report["n_eval"]
                else "no held-out study given")
    corpus = " + ".join(f"`{path}`" for path in report["manifest"])
    prefix.with_suffix(".md").write_text(
        f"Trained on {report['n_corpus']} videos of {corpus}, {held_out}. `{report['command']}` "
        f"at commit `{report['commit']}`.\n\n" + "\n".join(rows) + "\n")
    if report["n_eval"]:
        plot_curves({name: report[name] for name in ("teacher", "student")}, prefix.with_suffix(".png"), "held-out ")


if __name__ == "__main__":
    sys.exit(main())
