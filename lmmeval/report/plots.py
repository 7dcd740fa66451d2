"""The report's figures (PNG, matplotlib's Agg backend: no display, no server).

- ``score_distributions``: per group, every input's score (dots) with the group mean and its
  95 % bootstrap interval (bar), one panel per dimension, groups in leaderboard order;
- ``mos_scatter``: predicted scores against MOS with the fitted logistic-4 curve;
- ``distortion_heatmap``: groups x the nine categories, the share of inputs with each
  (predicted, and annotated beside it), like the Gen3DHF paper's Fig. 3b.

matplotlib is the ``[plots]`` extra: ``available()`` says whether it is installed, and the report
is written without figures when it is not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..eval.metrics import logistic4
from ..labels import DISTORTIONS, SCORE_RANGE
from .ranking import Leaderboard

DPI = 100
# Short names of the categories for the heat map's columns (the full names are in the tables).
SHORT = {c: c.replace(" Distortions", "").replace(" or Blending Issues", "/blending")
         .replace("Blurring / Exposure / Grain", "Blur/exposure").replace("Accessories or Cloth", "Accessories")
         for c in DISTORTIONS}


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def score_distributions(board: Leaderboard, values: dict[str, dict[str, list[float]]], out: Path,
                        seed: int = 0) -> Path:
    """``values``: {dimension: {group: scores in the means}}."""
    plt = _pyplot()
    groups = board.groups[::-1]  # best at the top
    dims = board.dimensions
    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 0.9 + 0.32 * len(groups)), squeeze=False,
                             sharey=True)
    jitter = np.random.default_rng(seed)
    for ax, d in zip(axes[0], dims):
        for y, g in enumerate(groups):
            v = np.asarray(values[d].get(g, []), dtype=float)
            if len(v):
                ax.scatter(v, y + jitter.uniform(-0.18, 0.18, len(v)), s=6, alpha=min(0.8, 40 / len(v) + 0.1),
                           color="#7a8fa6", linewidths=0)
            s = board.entry(g).scores[d]
            if s.mean is not None:
                if s.ci_low is not None:
                    ax.plot([s.ci_low, s.ci_high], [y, y], color="#c0392b", lw=2.5, solid_capstyle="butt")
                ax.plot([s.mean], [y], "o", color="#c0392b", ms=5)
        ax.set(xlim=SCORE_RANGE, xlabel=d, title=f"{d}: mean and 95% interval")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(groups)), groups, fontsize=8)
    axes[0][0].set_ylim(-0.6, len(groups) - 0.4)
    return _save(fig, out)


def mos_scatter(label: str, pred: dict[str, list[float]], mos: dict[str, list[float]], fits: dict[str, list | None],
                out: Path) -> Path:
    """Predicted vs MOS per dimension; ``fits``: the logistic-4 parameters (None: no curve)."""
    plt = _pyplot()
    dims = list(pred)
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 4), squeeze=False)
    for ax, d in zip(axes[0], dims):
        ax.scatter(pred[d], mos[d], s=8, alpha=0.6, linewidths=0)
        if fits.get(d) is not None and len(pred[d]):
            x = np.linspace(min(pred[d]), max(pred[d]), 200)
            ax.plot(x, logistic4(x, *fits[d]), color="#c0392b", lw=1.5, label="logistic-4 fit")
            ax.legend(fontsize=8, loc="upper left")
        ax.set(xlim=SCORE_RANGE, ylim=SCORE_RANGE, xlabel=f"predicted {d}", ylabel=f"{d} MOS", title=f"{label}: {d}")
        ax.grid(alpha=0.3)
    return _save(fig, out)


def distortion_heatmap(panels: list[tuple[str, dict]], out: Path) -> Path:
    """``panels``: (title, profile) pairs; a profile is {group: {"n", "shares": {category: share}}}."""
    plt = _pyplot()
    rows = max(len(p) for _, p in panels)
    # Panels of the same groups share their row labels (written once, on the left).
    shared = all(list(p) == list(panels[0][1]) for _, p in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(0.5 * len(DISTORTIONS) * len(panels) + 3.5, 1.8 + 0.3 * rows),
                             squeeze=False, sharey=shared, layout="constrained")
    image = None
    for k, (ax, (title, profile)) in enumerate(zip(axes[0], panels)):
        groups = list(profile)
        grid = np.array([[np.nan if profile[g]["shares"][c] is None else profile[g]["shares"][c] for c in DISTORTIONS]
                         for g in groups], dtype=float).reshape(len(groups), len(DISTORTIONS))
        image = ax.imshow(grid, cmap="magma_r", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(DISTORTIONS)), [SHORT[c] for c in DISTORTIONS], rotation=60, ha="right", fontsize=8)
        if k == 0 or not shared:
            ax.set_yticks(range(len(groups)), [f"{g} ({profile[g]['n']})" for g in groups], fontsize=8)
        ax.set_title(title, fontsize=10)
        if len(groups) * len(DISTORTIONS) <= 400:  # the shares written in, while they stay legible
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=6,
                            color="white" if v > 0.55 else "black")
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, pad=0.02, label="share of inputs")
    return _save(fig, out)
