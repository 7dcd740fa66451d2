"""Vision encoders with a linear readout, trained alone: the models and loop that stage 0
(``vision_pretrain``) and the backbone probe (``research/probe.py``) share.

Each encoder feeds the same readout (mean over frames/tokens -> LayerNorm -> one linear layer -> two
MOS on the MOS scale and eight category logits), trained with the same loss (L1 on MOS + BCE on
categories), optimiser and schedule (``fit``), and tested on held-out videos (``heldout_metrics``).

Encoders:
- ``QwenVisionEncoder``: a Qwen2.5-VL vision tower (14-pixel patches, window and full attention,
  2x2 token merger), fed exactly the processor's pixels;
- ``FrameEncoder``: a torchvision CNN (``resnet18``, ``mobilenet_v3_small``) on the sampled frames.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from ..data.manifest import Record
from ..eval.metrics import srcc
from ..io.media import Visual, load_visual
from ..labels import DIMENSIONS
from ..model.processing import preprocess_videos
from .baseline import CATEGORIES, normalise, pick_frames, to_score_range


class QwenVisionEncoder(nn.Module):
    """A Qwen2.5-VL vision tower; (b, patches, C*tp*p*p) pixels -> (b, d) mean merged token.

    ``QwenVisionEncoder.random(wide)`` builds the tiny preset's tower with random weights;
    the vision pretraining (``lmmeval.training.vision_pretrain``) wraps a base checkpoint's tower.
    """

    def __init__(self, visual: nn.Module, processor, dim: int):
        super().__init__()
        self.visual, self.processor = visual, processor
        self.dim = dim  # the merger projects to the LLM width

    @classmethod
    def random(cls, wide: bool) -> QwenVisionEncoder:
        from ..model.presets import build_base, load_preset

        preset = load_preset("tiny")
        if wide:
            preset |= {"vision_hidden_size": 192, "vision_intermediate_size": 384}
        # Drawn from torch's global generator (the probe seeds it), as the probe's other encoders are.
        model, processor = build_base(preset, seed=None)
        return cls(model.model.visual, processor, preset["hidden_size"])

    def inputs(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        pixels, grids = [], []
        for v in visuals:
            out = preprocess_videos(self.processor, [v])
            pixels.append(out["pixel_values_videos"])
            grids.append(out["video_grid_thw"][0])
        if len({tuple(g.tolist()) for g in grids}) != 1:
            raise ValueError("every video must be sampled to the same patch grid (same length and frame size); "
                             f"got {sorted({tuple(g.tolist()) for g in grids})}")
        return {"pixels": torch.stack(pixels), "grid": torch.stack(grids)}  # (n, patches, 1176), (n, 3)

    def tokens(self, pixels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """(b, merged tokens, d), in (t, h, w) raster order: the tower undoes its window order."""
        b = pixels.shape[0]
        out = self.visual(pixels.flatten(0, 1), grid_thw=grid)
        return out.pooler_output.reshape(b, -1, self.dim)

    def forward(self, pixels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return self.tokens(pixels, grid).mean(1)


class FrameEncoder(nn.Module):
    """A random-init torchvision CNN; (b, t, 3, h, w) frames -> (b, d) mean frame embedding."""

    def __init__(self, name: str, frames: int):
        import torchvision

        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        if name == "resnet18":
            net.fc = nn.Identity()
            self.features, self.dim = net, 512
        else:
            self.features, self.dim = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 576
        self.frames = frames

    def inputs(self, visuals: list[Visual]) -> dict[str, torch.Tensor]:
        return {"clips": torch.stack([pick_frames(v.frames, self.frames) for v in visuals])}  # (n, t, 3, h, w) uint8

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        return self.features(normalise(clips.flatten(0, 1))).reshape(b, t, -1).mean(1)

    def feature_map(self, frames: torch.Tensor) -> torch.Tensor:
        """ResNet only: uint8 (n, 3, h, w) frames -> (n, 512, h/32, w/32), the map before pooling."""
        net = self.features
        if not hasattr(net, "layer4"):
            raise ValueError("feature_map needs the resnet18 encoder")
        x = net.maxpool(net.relu(net.bn1(net.conv1(normalise(frames)))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))


class Probe(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        # LayerNorm first: the encoders' embeddings differ in scale by orders of magnitude.
        self.readout = nn.Sequential(nn.LayerNorm(encoder.dim), nn.Linear(encoder.dim, len(DIMENSIONS) + len(CATEGORIES)))

    def forward(self, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.encoder(**inputs))

    def head(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, d) embedding -> MOS (b, 2) on the MOS scale, category logits (b, 8)."""
        out = self.readout(embedding)  # (b, 2 + 8)
        return to_score_range(out[:, :2]), out[:, 2:]


def decode(records: list[Record], sampling, geometry) -> list[Visual]:
    """Each record's video, sampled as the assessor samples it (decoded once, shared by every input form)."""
    return [load_visual(str(r.video_path), sampling, geometry) for r in records]


@torch.no_grad()
def heldout_metrics(model: Probe, inputs: dict, mos: torch.Tensor, cats: torch.Tensor) -> dict:
    model.eval()
    scores, logits = [], []
    for i in range(0, len(mos), 32):
        s, c = model(**{k: v[i:i + 32] for k, v in inputs.items()})
        scores.append(s)
        logits.append(c)
    scores, logits = torch.cat(scores), torch.cat(logits)
    # A constant prediction (an encoder that has learnt nothing yet) has no rank correlation: None.
    out = {f"{d}_srcc": srcc(scores[:, j].numpy(), mos[:, j].numpy()) if scores[:, j].std() > 0 else None
           for j, d in enumerate(DIMENSIONS)}
    labelled = ~torch.isnan(cats[:, 0])  # records whose categories are known
    out["exact_set_accuracy"] = (float(((logits[labelled] > 0).float() == cats[labelled]).all(1).float().mean())
                                 if labelled.any() else None)
    return out


def fit(model: nn.Module, n_train: int, batch_loss, epochs: int, batch_size: int, lr: float, weight_decay: float,
        seed: int, desc: str, progress: bool = True, after_epoch=None) -> list[dict]:
    """The probes' and the vision pretraining's shared loop: AdamW, one-cycle schedule (10 % warm-up),
    gradient clipping at 1. ``batch_loss(indices)`` returns the loss of those training items;
    ``after_epoch()`` returns held-out metrics for the history row (or {})."""
    from tqdm import tqdm

    steps_per_epoch = n_train // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{n_train} training videos are fewer than one batch of {batch_size}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch, pct_start=0.1)
    rng = np.random.default_rng(seed)
    history, start = [], time.time()
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not progress)
    model.train()
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(n_train))
        epoch_loss = 0.0
        for i in range(steps_per_epoch):
            loss = batch_loss(order[i * batch_size:(i + 1) * batch_size])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            epoch_loss += loss.item() / steps_per_epoch
        metrics = after_epoch() if after_epoch else {}
        model.train()
        history.append({"epoch": epoch + 1, "minutes": (time.time() - start) / 60, "train_loss": epoch_loss,
                        **metrics})
        if progress:  # one line per epoch above the bar: long runs show where they stand as they go
            held_out = "".join(f", {k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in metrics.items())
            bar.write(f"{desc} epoch {epoch + 1}/{epochs}: train loss {epoch_loss:.4f}{held_out}")
    bar.close()
    return history


def plot_curves(curves: dict[str, list[dict]], path, title: str = "") -> None:
    """Per-epoch held-out quality SRCC, authenticity SRCC and exact-set accuracy, one line per
    history in ``curves`` (name -> history rows of ``fit``), side by side, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for name, history in curves.items():
        epochs = [h["epoch"] for h in history]
        for ax, key in zip(axes, ("quality_srcc", "authenticity_srcc", "exact_set_accuracy")):
            ax.plot(epochs, [np.nan if h[key] is None else h[key] for h in history], marker="o", label=name)
            ax.set_title(title + key.replace("_", " "))
            ax.set_xlabel("epoch")
            ax.set_ylim(-0.1, 1)
            ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
