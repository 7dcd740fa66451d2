"""`make demo`: the main job end to end on the embedded defaults.

Renders a small synthetic Gen3DHF-style study, prepares it (MOS, levels,
categories, saliency maps, folds), and prints its statistics with the
learnability checks.

    python -m lmmeval.demo --out demo_out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .prepare import prepare
from .stats import dataset_report
from .synth import SynthConfig, synthesize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--n", type=int, default=40, help="videos to synthesise (default 40)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    start = time.time()
    config = SynthConfig(n=args.n, seed=0, size=112, fps=8, seconds=2.0, workers=args.workers)
    print(f"[1/3] synthesising {config.n} videos ({config.size}x{config.size}, {config.fps} fps, {config.seconds:g} s) into {out / 'raw'}")
    synthesize(out / "raw", config)
    print(f"[2/3] preparing annotations into {out / 'prepared'}")
    manifest = prepare(out / "raw", out / "prepared")
    print("[3/3] statistics\n")
    print(dataset_report(manifest, truth_path=out / "raw" / "truth.jsonl"))
    print(f"\ndone in {time.time() - start:.0f} s; manifest: {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
