r"""Probe which vision encoder learns the synthetic benchmark from scratch (see lmmeval/experiments/probe.py).

Trains each encoder + the same linear readout on the folds other than --fold and
tests on --fold after every epoch; writes JSON, a Markdown table and a plot of
held-out SRCC per epoch.

    python train/probe_backbones.py --manifest runs/big/prepared/manifest.jsonl --fold 0 \
        --encoders qwen-vit resnet18 --epochs 6 --out docs/probe
"""

import argparse
import json
import sys
from pathlib import Path

from lmmeval.data.manifest import load_manifest
from lmmeval.experiments.probe import ENCODERS, ProbeConfig, plot_curves, run_probe
from lmmeval.model.presets import geometry
from lmmeval.provenance import git_commit
from lmmeval.training import load_sampling

TINY_STAGE1 = Path(__file__).resolve().parent.parent / "configs" / "tiny" / "stage1.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="manifest.jsonl from `lmmeval prepare`")
    parser.add_argument("--fold", type=int, default=0, help="held-out fold (default 0)")
    parser.add_argument("--encoders", nargs="+", default=["qwen-vit", "resnet18"], choices=ENCODERS)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default="docs/probe", help="output prefix: PREFIX.json, PREFIX.md, PREFIX.png")
    args = parser.parse_args()

    records = load_manifest(args.manifest)
    train = [r for r in records if r.fold != args.fold]
    test = [r for r in records if r.fold == args.fold]
    if not test:
        raise SystemExit(f"{args.manifest}: no record in fold {args.fold}")
    # What the tiny assessor sees: the sampling of its stage-1 config.
    sampling = load_sampling(TINY_STAGE1)
    commit = git_commit()
    results = {}
    for name in args.encoders:
        results[name] = run_probe(train, test, sampling, geometry("tiny"),
                                  ProbeConfig(encoder=name, epochs=args.epochs, lr=args.lr))
        print(name, json.dumps(results[name]["history"][-1]), flush=True)

    command = "python train/probe_backbones.py " + " ".join(sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "commit": commit, "results": results}, indent=2))
    rows = ["| encoder | parameters | quality SRCC | authenticity SRCC | distortion exact-set acc. | minutes |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        last = r["history"][-1]
        cells = [last["quality_srcc"], last["authenticity_srcc"], last["exact_set_accuracy"]]
        cells = " | ".join("constant" if c is None else f"{c:.3f}" for c in cells)
        rows.append(f"| {name} | {r['parameters'] / 1e6:.2f} M | {cells} | {last['minutes']:.1f} |")
    n = results[args.encoders[0]]
    out.with_suffix(".md").write_text(f"Held-out fold {args.fold} ({n['n_test']} videos; trained on {n['n_train']}) "
                                      f"after {args.epochs} epochs. `{command}` at commit `{commit}`.\n\n"
                                      + "\n".join(rows) + "\n")
    plot_curves({name: r["history"] for name, r in results.items()}, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
