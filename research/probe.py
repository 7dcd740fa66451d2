r"""Backbone probe: which vision encoder can learn the synthetic benchmark from scratch?

The cross-validation table shows the tiny assessor far from the targets. Its
language model, heads and training loop are the same code as the 7B path; what the
tiny preset lacks is pretraining. This probe isolates the vision encoder: on one
fold split, each encoder is trained end to end, from random weights, with the same
readout (mean over frames/tokens -> LayerNorm -> one linear layer -> two MOS on the MOS scale and eight
category logits), the same loss (L1 on MOS + BCE on categories), optimiser and
schedule (``lmmeval.training.encoders``, which stage 0 shares), and tested on the held-out fold
after every epoch. Writes JSON, a Markdown table and a plot of held-out SRCC per epoch.

Encoders:
- ``qwen-vit``: the tiny preset's Qwen2.5-VL vision tower (14-pixel patches, window
  and full attention, 2x2 token merger), fed exactly the processor's pixels;
- ``qwen-vit-wide``: the same tower three times wider (192), to separate width from
  architecture;
- ``resnet18``, ``mobilenet_v3_small``: torchvision CNNs on the sampled frames.

    python -m research.probe --manifest runs/big/prepared/manifest.jsonl --fold 0 \
        --encoders qwen-vit resnet18 --epochs 6 --out docs/results/probe/probe
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lmmeval.data.manifest import Record, load_manifest
from lmmeval.model.presets import geometry
from lmmeval.provenance import git_commit
from lmmeval.training import load_sampling
from lmmeval.training.baseline import label_loss, targets
from lmmeval.training.encoders import (FrameEncoder, Probe, QwenVisionEncoder, decode, fit, heldout_metrics,
                                       plot_curves)

TINY_STAGE1 = Path(__file__).resolve().parent.parent / "configs" / "tiny" / "stage1.yaml"
ENCODERS = ("qwen-vit", "qwen-vit-wide", "resnet18", "mobilenet_v3_small")


@dataclass
class ProbeConfig:
    encoder: str = "resnet18"  # one of ENCODERS
    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-3  # peak of a one-cycle schedule (10 % warm-up)
    weight_decay: float = 0.05
    frames: int = 4  # CNNs: frames per video, evenly spaced among the sampled ones
    seed: int = 0

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        for name in ("epochs", "batch_size", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def run_probe(train: list[Record], test: list[Record], sampling, geometry, config: ProbeConfig,
              progress: bool = True) -> dict:
    """Train ``config.encoder`` + readout on ``train`` and return per-epoch held-out metrics; videos
    are sampled by ``sampling`` in ``geometry``, as the assessor samples them."""
    torch.manual_seed(config.seed)
    if config.encoder.startswith("qwen-vit"):
        encoder = QwenVisionEncoder.random(wide=config.encoder.endswith("wide"))
    else:
        encoder = FrameEncoder(config.encoder, config.frames)
    model = Probe(encoder)
    train_inputs = encoder.inputs(decode(train, sampling, geometry))
    test_inputs = encoder.inputs(decode(test, sampling, geometry))
    (mos, cats), (test_mos, test_cats) = targets(train), targets(test)

    def batch_loss(idx):
        scores, logits = model(**{k: v[idx] for k, v in train_inputs.items()})
        return label_loss(scores, logits, mos[idx], cats[idx])

    history = fit(model, len(train), batch_loss, config.epochs, config.batch_size, config.lr, config.weight_decay,
                  config.seed, config.encoder, progress, lambda: heldout_metrics(model, test_inputs, test_mos, test_cats))
    return {"config": asdict(config), "n_train": len(train), "n_test": len(test),
            "parameters": sum(p.numel() for p in encoder.parameters()), "history": history}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="manifest.jsonl from `lmmeval prepare`")
    parser.add_argument("--fold", type=int, default=0, help="held-out fold (default 0)")
    parser.add_argument("--encoders", nargs="+", default=["qwen-vit", "resnet18"], choices=ENCODERS)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default="docs/results/probe/probe",
                        help="output prefix: PREFIX.json, PREFIX.md, PREFIX.png")
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

    command = "python -m research.probe " + " ".join(sys.argv[1:])
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
