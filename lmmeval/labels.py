"""The fixed label sets of LMME3DHF and the MOS -> text-level mapping (paper Eq. 4)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# ITU-R BT.500 five-grade scale, worst first: index i is level i+1 of Eq. 4.
LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")

# The paper's nine distortion categories (section 3.3), in the paper's order.
DISTORTIONS: tuple[str, ...] = (
    "Eye Distortions",
    "Mouth Distortions",
    "Hair Distortions",
    "Facial Feature Distortions",
    "Head Structure Distortions",
    "Overlap or Blending Issues",
    "Blurring / Exposure / Grain",
    "Accessories or Cloth Distortions",
    "No Distortion",
)
NO_DISTORTION = DISTORTIONS[-1]

# The two rated dimensions of the subjective study.
DIMENSIONS: tuple[str, ...] = ("quality", "authenticity")

# The MOS scale: per-subject Z-scores rescaled by (z + 3) / 6 onto this range (paper Eq. 3). Scores
# are predicted, trained and reported on it.
SCORE_RANGE: tuple[float, float] = (0.0, 100.0)


def score_to_level(
    scores: Iterable[float] | float,
    lo: float | None = None,
    hi: float | None = None,
) -> list[str]:
    """Map MOS values to text levels with five equal bins over [lo, hi] (paper Eq. 4).

    Level i (1-based) covers ``lo + (i-1)/5*(hi-lo) < s <= lo + i/5*(hi-lo)``; the
    minimum itself falls in the first bin ("bad"). ``lo``/``hi`` default to the
    minimum and maximum of ``scores``. Scores outside an explicitly given [lo, hi]
    (e.g. a test set scored with the training set's range) are clamped to the end
    bins. NaN or a degenerate range raises ``ValueError``.
    """
    values = np.atleast_1d(np.asarray(scores, dtype=np.float64))
    if values.ndim != 1:
        raise ValueError(f"scores must be a scalar or a 1-D sequence, got shape {values.shape}")
    if values.size == 0:
        return []
    if np.isnan(values).any():
        bad = np.flatnonzero(np.isnan(values)).tolist()
        raise ValueError(f"scores contain NaN at positions {bad[:10]}")
    lo = float(values.min()) if lo is None else float(lo)
    hi = float(values.max()) if hi is None else float(hi)
    if not hi > lo:
        raise ValueError(f"score_to_level needs hi > lo, got lo={lo}, hi={hi}")
    # The four inner bin edges; a score equal to an edge belongs to the lower bin,
    # hence searchsorted(side="left") counts edges strictly below the score.
    edges = lo + (hi - lo) * np.arange(1, len(LEVELS)) / len(LEVELS)
    indices = np.searchsorted(edges, values, side="left")
    return [LEVELS[i] for i in indices]


def level_index(level: str) -> int:
    """Position of ``level`` in LEVELS (0 = bad), with a clear error for unknown names."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}") from None
