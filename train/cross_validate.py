r"""5-fold cross-validation on the synthetic benchmark (what `make cv` runs).

For each fold of a prepared study, trains the three stages (configs/tiny/*.yaml) and
the CNN baseline on the other folds and evaluates both on it; writes the mean +- std
table to docs/results/cv/results.md and the per-fold numbers to docs/results/cv/results.json. The
study comes from `lmmeval synth` + `lmmeval prepare` (the Makefile's rule for
runs/cv/prepared/manifest.jsonl renders the 400-video one).

    python train/cross_validate.py --manifest runs/cv/prepared/manifest.jsonl \
        [--steps N] [--work runs/cv] [--base runs/pretrain/base] [--results docs/results/cv/results.md] \
        [--set STAGE.KEY=VALUE ...] [--extra-train MANIFEST ...] [--renders MANIFEST ...]

--set changes one stage's config for every fold, for ablations; write the results elsewhere so
the committed table stays the default run's, e.g. the Bradley-Terry ranking loss in stage 2:

    python train/cross_validate.py --manifest runs/cv/prepared/manifest.jsonl --steps 1000 \
        --base runs/pretrain/base --set 2.pairwise_weight=0.5 --work runs/cv_pairwise \
        --results runs/cv_pairwise/results.md

--extra-train adds whole studies to every stage's training set in every fold (each must be
disjoint from --manifest: another synth seed), e.g. stage 0's corpus:

    python train/cross_validate.py --manifest runs/cv/prepared/manifest.jsonl --steps 1000 \
        --base runs/pretrain/base --extra-train runs/pretrain2/prepared/manifest.jsonl \
        --work runs/cv_extra --results runs/cv_extra/results.md

--renders names the same study rendered at other protocols (`lmmeval synth` with the same --seed,
another --size/--fps/--seconds, prepared with the same --folds): every stage also trains on the
training heads' renders, and each fold is tested on its held-out heads' renders as well, with the
agreement between a head's two scores (what `make cv-renders` runs):

    python train/cross_validate.py --manifest runs/cv/prepared/manifest.jsonl --steps 1000 \
        --base runs/pretrain/base --renders runs/cv512/prepared/manifest.jsonl \
        --work runs/cv_renders --results docs/results/cv_renders/results.md
"""

import argparse
import sys

from lmmeval.training.crossval import plan_cross_validation, run_cross_validation, stage_overrides_from


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="manifest.jsonl of `lmmeval prepare` (with --folds)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, help="override every stage's steps (replacing a config's epochs)")
    parser.add_argument("--configs", nargs=3, metavar=("STAGE1", "STAGE2", "STAGE3"),
                        help="the three stage configs (default configs/tiny/stage{1,2,3}.yaml; "
                             "configs/qwen7b/ for the 7B, on GPUs)")
    parser.add_argument("--base", help="stage 1's base instead of the config's (e.g. runs/pretrain/base from "
                                       "train/stage0_vision.py)")
    parser.add_argument("--work", default="runs/cv", help="working folder (default runs/cv)")
    parser.add_argument("--results", default="docs/results/cv/results.md",
                        help="Markdown table output; the per-fold JSON goes next to it (default docs/results/cv/results.md)")
    parser.add_argument("--set", nargs="*", default=[], metavar="STAGE.KEY=VALUE",
                        help="override a key of one stage's config in every fold, e.g. --set 2.pairwise_weight=0.5 "
                             "1.lora='{r: 16, alpha: 32, modules_to_save: [lm_head]}' (values are YAML)")
    parser.add_argument("--extra-train", nargs="+", default=[], metavar="MANIFEST",
                        help="more prepared studies that stages 1-3 also train on whole in every fold (not the "
                             "baseline); each must be disjoint from --manifest (another `lmmeval synth --seed`)")
    parser.add_argument("--renders", nargs="+", default=[], metavar="MANIFEST",
                        help="the same study rendered at other protocols (same synth --seed, same prepare "
                             "--folds): trained on for the training heads, tested on for the held-out ones")
    args = parser.parse_args()
    # Every argument is read and checked before the first fold trains; a mistake there is a usage
    # error. What fails later (hours into training) keeps its traceback.
    try:
        plan = plan_cross_validation(args.manifest, folds=args.folds, configs=args.configs,
                                     stage_overrides=stage_overrides_from(args.set), extra_train=args.extra_train,
                                     renders=args.renders, base=args.base, results_md=args.results, steps=args.steps)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    command = "python train/cross_validate.py " + " ".join(sys.argv[1:])
    out = run_cross_validation(plan, args.work, command=command.strip())
    print(out["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
