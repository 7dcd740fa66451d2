"""The training objectives of the three stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..labels import SCORE_RANGE

EPS = 2.2204e-16  # MATLAB eps, as in the KLD metric


def regression_loss(scores: torch.Tensor, mos: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true MOS (paper section 4.2), in units of the MOS scale's width."""
    width = SCORE_RANGE[1] - SCORE_RANGE[0]
    return F.l1_loss(scores / width, mos / width)


def pairwise_loss(scores: torch.Tensor, mos: torch.Tensor, temperature: float) -> torch.Tensor:
    """Bradley-Terry ranking loss over the pairs of a batch with distinct MOS, per dimension:
    -log sigmoid((s_i - s_j) / T) for every pair where video i has the higher MOS.
    scores, mos: (B, 2). Zero when the batch has no such pair."""
    diff_s = (scores[:, None, :] - scores[None, :, :]) / temperature  # (B, B, 2)
    higher = mos[:, None, :] > mos[None, :, :]  # (B, B, 2): i beats j
    if not higher.any():
        return scores.sum() * 0.0
    return F.softplus(-diff_s[higher]).mean()  # softplus(-x) = -log sigmoid(x)


def saliency_loss(logits: torch.Tensor, target: torch.Tensor, weights) -> dict[str, torch.Tensor]:
    """Paper Eq. 5 for one map: w1 L1 + w2 (1 - CC) + w3 KL + w4 BCE.

    logits, target: (H, W); target in [0, 1]. CC and KL compare the maps as
    distributions, which an empty target (no distortion marked) does not have, so
    for it only L1 and BCE apply (they push the prediction towards zero).
    """
    pred = torch.sigmoid(logits)
    terms = {"l1": F.l1_loss(pred, target), "bce": F.binary_cross_entropy_with_logits(logits, target)}
    if target.sum() > 0:
        p, g = pred.flatten(), target.flatten()
        pc, gc = p - p.mean(), g - g.mean()
        terms["cc"] = 1 - (pc * gc).sum() / (pc.norm() * gc.norm() + EPS)
        pn, gn = p / (p.sum() + EPS), g / (g.sum() + EPS)
        terms["kl"] = (gn * torch.log(EPS + gn / (pn + EPS))).sum()
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    return {"loss": total, **terms}
