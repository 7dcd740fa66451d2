"""A reference baseline for the cross-validation table: a small CNN trained from scratch.

torchvision's MobileNetV3-Small (random init) embeds each sampled frame; the frame
embeddings are averaged over time; linear heads predict both MOS (a sigmoid onto the MOS scale, L1
loss) and the eight distortion categories (multi-label, BCE). It sees the same
frames as the assessor (the same ``SamplingConfig``), so the table compares models,
not inputs. No saliency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.manifest import Record
from ..io.media import load_visual
from ..labels import DIMENSIONS, DISTORTIONS, NO_DISTORTION, SCORE_RANGE

MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
CATEGORIES = DISTORTIONS[:-1]


@dataclass
class BaselineConfig:
    frames: int = 4  # frames per video (evenly spaced among the sampled ones)
    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0


class FrameCNN(nn.Module):
    def __init__(self):
        import torchvision

        super().__init__()
        net = torchvision.models.mobilenet_v3_small(weights=None)
        self.features = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (n, 576)
        self.scores = nn.Linear(576, 2)
        self.categories = nn.Linear(576, len(CATEGORIES))

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = clips.shape[:2]
        emb = self.features(normalise(clips.flatten(0, 1))).reshape(b, t, -1).mean(1)  # (b, 576)
        return to_score_range(self.scores(emb)), self.categories(emb)


def frame_clips(records: list[Record], sampling, geometry, frames: int) -> torch.Tensor:
    """(n, frames, 3, h, w) uint8: ``frames`` evenly spaced among each video's sampled frames
    (kept uint8: normalised per batch, a quarter of the memory)."""
    return torch.stack([pick_frames(load_visual(str(r.video_path), sampling, geometry).frames, frames)
                        for r in records])


def pick_frames(frames: np.ndarray, n: int) -> torch.Tensor:
    """(T, h, w, 3) uint8 frames -> (n, 3, h, w) uint8, ``n`` of them evenly spaced."""
    pick = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return torch.from_numpy(frames[pick]).permute(0, 3, 1, 2)


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, h, w) -> float, ImageNet mean/std."""
    return (frames.float() / 255 - MEAN) / STD


def targets(records: list[Record]) -> tuple[torch.Tensor, torch.Tensor]:
    """MOS (n, 2) on the MOS scale and category indicators (n, 8) of manifest records (a row of NaN
    where the categories are not labelled: ``label_loss`` and the metrics leave it out)."""
    mos = torch.tensor([[r.mos[d] for d in DIMENSIONS] for r in records], dtype=torch.float32)
    cats = torch.tensor([[c in r.categories for c in CATEGORIES] if r.labelled else [math.nan] * len(CATEGORIES)
                         for r in records], dtype=torch.float32)
    return mos, cats


def to_score_range(logits: torch.Tensor) -> torch.Tensor:
    """Unbounded outputs -> scores on the MOS scale, through a sigmoid."""
    lo, hi = SCORE_RANGE
    return lo + (hi - lo) * torch.sigmoid(logits)


def label_loss(scores: torch.Tensor, logits: torch.Tensor, mos: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
    """L1 on MOS (in units of the scale's width) + BCE on the eight categories: the baseline's loss,
    shared by the probes and stage 0."""
    width = SCORE_RANGE[1] - SCORE_RANGE[0]
    labelled = ~torch.isnan(cats[:, 0])
    bce = F.binary_cross_entropy_with_logits(logits[labelled], cats[labelled]) if labelled.any() else logits.sum() * 0
    return F.l1_loss(scores / width, mos / width) + bce


def train_baseline(records: list[Record], sampling, geometry, config: BaselineConfig = BaselineConfig()) -> FrameCNN:
    """The baseline trained on ``records``' videos, sampled by ``sampling`` in ``geometry`` (the assessor's)."""
    torch.manual_seed(config.seed)
    model = FrameCNN()
    clips = frame_clips(records, sampling, geometry, config.frames)
    mos, cats = targets(records)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    model.train()
    for _ in range(config.epochs):
        for idx in np.array_split(rng.permutation(len(records)), max(1, len(records) // config.batch_size)):
            scores, logits = model(clips[idx])
            loss = label_loss(scores, logits, mos[idx], cats[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict_baseline(model: FrameCNN, records: list[Record], sampling, geometry,
                     config: BaselineConfig = BaselineConfig()):
    """(scores (n, 2) numpy, category lists) for ``records``."""
    scores, logits = model(frame_clips(records, sampling, geometry, config.frames))
    categories = [[c for c, p in zip(CATEGORIES, row) if p > 0] or [NO_DISTORTION] for row in logits.tolist()]
    return scores.numpy(), categories
