"""5-fold cross-validation on the synthetic benchmark (what `make cv` runs).

Renders and prepares a synthetic study unless --manifest is given, then for each
fold trains the three stages (configs/tiny/*.yaml) and the CNN baseline on the
other folds and evaluates both on it; writes the mean +- std table to docs/results.md.

    python train/cross_validate.py [--n 400] [--manifest M] [--steps N] [--work runs/cv] [--base DIR]
"""

import argparse
import subprocess
import sys
from pathlib import Path

from lmmeval.crossval import cross_validate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", help="an existing manifest (default: render --n videos and prepare them)")
    parser.add_argument("--n", type=int, default=400, help="videos to render when no --manifest (default 400)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, help="override every stage's steps")
    parser.add_argument("--base", help="stage 1's base instead of the config's (e.g. runs/pretrain/base from "
                                       "train/stage0_vision.py)")
    parser.add_argument("--work", default="runs/cv", help="working folder (default runs/cv)")
    parser.add_argument("--results", default="docs/results.md", help="Markdown table output (default docs/results.md)")
    args = parser.parse_args()
    work = Path(args.work)
    manifest = args.manifest
    if manifest is None:
        small = ["--size", "112", "--fps", "8", "--seconds", "2", "--workers", "2", "-q"]
        subprocess.run([sys.executable, "-m", "lmmeval.cli", "synth", str(work / "raw"), "--n", str(args.n), *small], check=True)
        subprocess.run([sys.executable, "-m", "lmmeval.cli", "prepare", str(work / "raw"), str(work / "prepared"),
                        "--folds", str(args.folds), "-q"], check=True)
        manifest = work / "prepared" / "manifest.jsonl"
    command = "python train/cross_validate.py " + " ".join(sys.argv[1:])
    out = cross_validate(manifest, work, folds=args.folds, steps=args.steps, results_md=args.results,
                         command=command.strip(), base=args.base)
    print(out["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
