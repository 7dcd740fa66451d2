"""`make demo`: the main job end to end with the embedded demo checkpoint.

1. render a small synthetic study (unseen by the demo checkpoint: another seed) and prepare it;
2. score its videos with the embedded checkpoint: results.jsonl / results.csv, a
   saliency heat map and an overlay GIF per video;
3. print predictions next to the study's MOS and annotations.

    python -m lmmeval.demo --out demo_out
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from .data.manifest import load_manifest
from .data.prepare import prepare
from .eval.metrics import srcc
from .inference.assessor import Assessor
from .inference.scoring import score_files
from .labels import DIMENSIONS
from .synth import SynthConfig, synthesize


def main(argv: list[str] | None = None) -> int:
    import warnings

    from .cli import _quiet_third_parties

    with warnings.catch_warnings():
        _quiet_third_parties(verbose=False, quiet=False)  # libraries' deprecation notices are not the demo's
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--n", type=int, default=20, help="videos to synthesise (default 20, 2 per generator)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        _claim(out)
    except ValueError as err:
        print(f"lmmeval demo: error: {err}", file=sys.stderr)
        return 2
    start = time.time()
    # Seed 2: unseen by the demo checkpoint (trained on seed 0; stage 0's corpus is seeds 1 and 3).
    config = SynthConfig(n=args.n, seed=2, size=112, fps=8, seconds=2.0, workers=args.workers)
    print(f"[1/4] rendering {config.n} synthetic face videos and their simulated study into {out / 'raw'}")
    synthesize(out / "raw", config, progress=False)
    manifest = prepare(out / "raw", out / "prepared", progress=False)
    print("[2/4] scoring them with the embedded demo checkpoint")
    assessor = Assessor.from_pretrained(device="cpu")
    summary = score_files(assessor, [out / "raw" / "videos"], out / "results.jsonl", csv_path=out / "results.csv",
                          saliency_dir=out / "saliency", overlay=True)
    rows = {Path(r["path"]).stem: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    records = load_manifest(manifest)
    print(f"[3/4] {summary.scored} scored, {summary.failed} failed\n")
    print(f"{'video':<10}{'quality':>16}{'authenticity':>16}   {'level q/a (pred | true)':<44}distortions (pred | true)")
    for r in records:
        p = rows[r.id]
        q = f"{p['quality']:5.1f} / {r.mos['quality']:5.1f}"
        a = f"{p['authenticity']:5.1f} / {r.mos['authenticity']:5.1f}"
        lv = f"{p['quality_level']}/{p['authenticity_level']} | {r.level['quality']}/{r.level['authenticity']}"
        print(f"{r.id:<10}{q:>16}{a:>16}   {lv:<44}{_short(p['distortions'])} | {_short(r.categories)}")
    print("\n(columns: predicted / MOS)")
    for dim in DIMENSIONS:
        print(f"SRCC {dim}: {srcc([rows[r.id][dim] for r in records], [r.mos[dim] for r in records]):+.3f} "
              f"over {len(records)} videos")
    print(f"\nresults: {out / 'results.jsonl'}, {out / 'results.csv'}; heat maps and overlays: {out / 'saliency'}")
    print("[4/4] the report of the study: a leaderboard of its generators, agreement with MOS, a gallery")
    from .report.write import write_report

    write_report(out / "report", [out / "results.jsonl"], manifest=manifest,
                 command=f"lmmeval report {out / 'results.jsonl'} --manifest {manifest} --out {out / 'report'}")
    print(f"report: {out / 'report' / 'index.html'} (open it in a browser; it works offline)")
    print(f"done in {time.time() - start:.0f} s")
    return 0 if summary.failed == 0 else 1


# Written into the demo's folder first: a rerun replaces only a folder the demo itself made.
MARKER = ".lmmeval-demo"


def _claim(out: Path) -> None:
    """Make ``out`` the demo's folder: a new or empty one, or one an earlier demo run wrote (replaced);
    any other folder is the user's and is refused."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; give a folder for the demo's outputs")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"{out} holds files the demo did not write; give a new folder (--out)")
        shutil.rmtree(out)  # an earlier demo run's outputs
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by python -m lmmeval.demo; a rerun replaces this folder\n")


def _short(categories: list[str]) -> str:
    return ", ".join(c.split()[0] for c in categories)


if __name__ == "__main__":
    raise SystemExit(main())
