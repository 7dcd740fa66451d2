"""How a metric's scores agree with human opinion, and what distortions each group shows.

- ``rank_agreement``: does the metric rank the groups (generators) as the study's MOS does?
  Kendall's tau-b and SRCC between the groups' metric means and MOS means, both over the same
  inputs, with a bootstrap interval (each group's inputs resampled, a score and its MOS together).
- ``input_correlations``: SRCC, PLCC (after the logistic-4 fit VQEG uses, as `lmmeval evaluate`
  reports it) and KRCC of the scores against MOS over the inputs: the paper's Table 1 numbers.
- ``distortion_profile``: the share of each group's inputs with each of the nine categories.

The correlations are those of ``lmmeval.eval.metrics``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning

from ..eval import metrics
from ..labels import DISTORTIONS
from .stats import bootstrap_means, kendall_tau_b_rows, rng_for, spearman_rows


@dataclass(frozen=True)
class RankAgreement:
    """Agreement of a metric's group ranking with the human one, in one dimension."""

    dimension: str
    groups: int  # groups with at least one input that has a score and a MOS
    kendall_tau: float | None  # None: fewer than 3 groups, or constant means
    kendall_ci: tuple[float, float] | None
    srcc: float | None
    srcc_ci: tuple[float, float] | None
    note: str = ""


@dataclass(frozen=True)
class Correlation:
    """Per-input agreement of one results file's scores with MOS, in one dimension."""

    dimension: str
    n: int
    srcc: float | None
    plcc: float | None  # after the logistic-4 fit of scores onto MOS
    plcc_raw: float | None  # of the unmapped scores
    krcc: float | None
    fit_params: list[float] | None = None  # logistic-4 [b1, b2, b3, b4], for the scatter plot
    note: str = ""


def _pair_metric(fn, x, y) -> float | None:
    try:
        return fn(x, y)
    except ValueError:  # constant, or too few: undefined, not zero
        return None


def rank_agreement(scores: dict[str, list[tuple[float, float]]], dimension: str, bootstrap: int, seed: int,
                   name: str = "results", level: float = 0.95) -> RankAgreement:
    """``scores``: {group: [(metric score, MOS) of each input]}. Groups without inputs are ignored."""
    groups = sorted(g for g, v in scores.items() if v)
    if len(groups) < 3:
        return RankAgreement(dimension, len(groups), None, None, None, None,
                             note=f"{len(groups)} group(s): a ranking needs at least 3")
    pairs = {g: np.asarray(scores[g], dtype=np.float64) for g in groups}
    metric = np.array([pairs[g][:, 0].mean() for g in groups])
    human = np.array([pairs[g][:, 1].mean() for g in groups])
    tau, rho = _pair_metric(metrics.krcc, metric, human), _pair_metric(metrics.srcc, metric, human)
    # (bootstrap, groups, 2): each group's inputs resampled with their MOS
    means = np.stack([bootstrap_means(pairs[g], bootstrap, rng_for(seed, name, "agreement", g, dimension))
                      for g in groups], axis=1)
    # The replicates' correlations at once (scipy's functions take a millisecond each).
    taus = kendall_tau_b_rows(means[:, :, 0], means[:, :, 1])
    rhos = spearman_rows(means[:, :, 0], means[:, :, 1])
    tail = (1 - level) / 2

    def interval(values):
        values = values[np.isfinite(values)]
        if len(values) < bootstrap / 2:  # mostly undefined: no interval rather than a biased one
            return None
        lo, hi = np.quantile(values, [tail, 1 - tail])
        return float(lo), float(hi)

    return RankAgreement(dimension, len(groups), tau, interval(taus), rho, interval(rhos),
                         note="" if tau is not None else "constant group means: undefined")


def input_correlations(pred: list[float], mos: list[float], dimension: str) -> Correlation:
    """SRCC / PLCC (logistic-4 fitted, and raw) / KRCC of scores against MOS."""
    n = len(pred)
    try:
        values = metrics.correlations(pred, mos)
    except ValueError as err:
        return Correlation(dimension, n, None, None, None, None, note=str(err))
    try:
        with warnings.catch_warnings():  # "covariance not estimated": the fit's PLCC is what counts here
            warnings.simplefilter("ignore", OptimizeWarning)
            fitted = metrics.correlations(pred, mos, fit="logistic4")
        plcc, params, note = fitted["plcc_fitted"], fitted["fit_params"], ""
    except RuntimeError as err:  # the fit did not converge: say so rather than report the raw PLCC as fitted
        plcc, params, note = None, None, str(err)
    return Correlation(dimension, n, values["srcc"], plcc, values["plcc"], values["krcc"], params, note)


def distortion_profile(categories_by_group: dict[str, list[list[str] | None]]) -> dict[str, dict]:
    """{group: {"n": inputs with categories, "shares": {category: share of them}}}, groups sorted by
    name; an input whose categories are None (not labelled, or a failed row) does not count."""
    out = {}
    for g, lists in sorted(categories_by_group.items()):
        known = [set(c) for c in lists if c is not None]
        out[g] = {"n": len(known),
                  "shares": {c: (sum(c in k for k in known) / len(known) if known else None) for c in DISTORTIONS}}
    return out
