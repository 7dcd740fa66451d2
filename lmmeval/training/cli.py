"""Command-line entry shared by the three stage scripts in train/."""

from __future__ import annotations

import argparse
import sys

from .config import load_train_config, parse_overrides
from .recipe import run_stage


def stage_main(stage: int, description: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="stage YAML (see configs/)")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON (configs/deepspeed/zero2.json or zero3.json)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set steps=10 fold=0 output_dir=runs/x")
    parser.add_argument("--local_rank", type=int, default=0, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    try:
        config = load_train_config(args.config, overrides)
        if config.stage != stage:
            raise ValueError(f"{args.config}: stage {config.stage} config given to the stage {stage} script")
        final = run_stage(config, args.deepspeed, resume=args.resume)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"stage {stage} done: {final}")
    return 0
