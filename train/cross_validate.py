"""5-fold cross-validation on the synthetic benchmark (what `make cv` runs).

For each fold of a prepared study, trains the three stages (configs/tiny/*.yaml) and
the CNN baseline on the other folds and evaluates both on it; writes the mean +- std
table to docs/results_cv.md and the per-fold numbers to docs/results_cv.json. The
study comes from `lmmeval synth` + `lmmeval prepare` (the Makefile's rule for
runs/cv/prepared/manifest.jsonl renders the 400-video one).

    python train/cross_validate.py --manifest runs/cv/prepared/manifest.jsonl \
        [--steps N] [--work runs/cv] [--base runs/pretrain/base] [--results docs/results_cv.md]
"""

import argparse
import sys

from lmmeval.crossval import cross_validate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="manifest.jsonl of `lmmeval prepare` (with --folds)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, help="override every stage's steps")
    parser.add_argument("--base", help="stage 1's base instead of the config's (e.g. runs/pretrain/base from "
                                       "train/stage0_vision.py)")
    parser.add_argument("--work", default="runs/cv", help="working folder (default runs/cv)")
    parser.add_argument("--results", default="docs/results_cv.md",
                        help="Markdown table output; the per-fold JSON goes next to it (default docs/results_cv.md)")
    args = parser.parse_args()
    command = "python train/cross_validate.py " + " ".join(sys.argv[1:])
    out = cross_validate(args.manifest, args.work, folds=args.folds, steps=args.steps, results_md=args.results,
                         command=command.strip(), base=args.base)
    print(out["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
