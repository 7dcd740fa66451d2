"""The statistics of a leaderboard: bootstrap intervals, permutation tests, Holm's correction, ranks.

Plain numpy/scipy (no torch, no plotting), each function small enough to check by hand:

- ``bootstrap_means`` / ``mean_ci``: the percentile bootstrap of a mean (inputs resampled with
  replacement). It is the simplest interval that needs no normality assumption; at n = 30 its
  coverage of a 95 % interval is about 93-94 % (the test measures it).
- ``mean_difference_p``: a two-sided test of a difference of means, paired (the same inputs
  scored twice) or unpaired: the exact permutation test for small groups (every sign flip of the
  pairs, or every split of the pooled scores), the t-test (its large-sample approximation) above.
- ``holm``: Holm's step-down adjustment, which controls the family-wise error over all pairs of a
  leaderboard without assuming the tests independent.
- ``ranks``: competition ranks (1 = best; ties share the better rank).

Each random stream is derived from the user's seed and a name (``rng_for``), so a group's interval
does not change when another group is added to the report.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
from scipy import stats

# Above this many permutations a test uses the t-test (mean_difference_p says why).
MAX_EXACT = 65_536
# Resampled values held in memory at once by the bootstrap (a 10,000-input group resampled
# 2,000 times would otherwise take 160 MB of indices).
_CHUNK = 2_000_000


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and ``names`` (e.g. a group and a dimension): reproducible,
    and independent of which other names the report holds."""
    return np.random.default_rng([int(seed), *(zlib.crc32(n.encode()) for n in names)])


def bootstrap_means(values, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples of ``values``: shape (n_resamples,) for 1-D
    values; for 2-D values (n inputs, k columns) whole rows are resampled, so that paired columns
    (an input's score and its MOS) stay together: shape (n_resamples, k)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    out = np.empty((n_resamples, *values.shape[1:]))
    step = max(1, _CHUNK // values.size)
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        out[start:start + rows] = values[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return out


def mean_ci(values, n_resamples: int, rng: np.random.Generator, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of ``values`` (None below two values: one
    value resamples to itself, and an interval of zero width would claim certainty)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None
    means = bootstrap_means(values, n_resamples, rng)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _mean_diff(x, y, axis):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _paired_mean_diff(x, y, axis):
    return np.mean(x - y, axis=axis)


def permutations(n_a: int, n_b: int, paired: bool) -> int:
    """The number of distinct permutations of a test: sign flips of n pairs, or splits of the
    pooled values into groups of n_a and n_b."""
    return 2 ** n_a if paired else math.comb(n_a + n_b, n_a)


def test_name(n_a: int, n_b: int, paired: bool, max_exact: int = MAX_EXACT) -> str:
    """Which test ``mean_difference_p`` runs on groups of these sizes."""
    if permutations(n_a, n_b, paired) <= max_exact:
        return "exact permutation"
    return "paired t" if paired else "Welch t"


def mean_difference_p(a, b, paired: bool, max_exact: int = MAX_EXACT) -> float:
    """Two-sided p-value of mean(a) - mean(b) = 0.

    ``paired``: a[i] and b[i] are the same input scored twice (two results files); otherwise two
    independent groups. Small groups get the exact permutation test: every sign flip of the
    pairs, or every split of the pooled values into groups of the same sizes (at most
    ``max_exact`` permutations; groups of up to about 8 inputs each, or 16 pairs). Larger ones get
    the t-test, the permutation test's classical large-sample approximation: Welch's (unpaired,
    unequal variances allowed) or the paired one. A Monte Carlo permutation test would be no
    better there, and could not give a p-value below 1/(resamples + 1): too coarse for Holm's
    threshold alpha/m over the hundreds of pairs of 20 generators."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired and len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each group needs at least 2 scores to be tested, got {len(a)} and {len(b)}")
    if permutations(len(a), len(b), paired) <= max_exact:
        result = stats.permutation_test((a, b), _paired_mean_diff if paired else _mean_diff, vectorized=True,
                                        permutation_type="samples" if paired else "independent",
                                        n_resamples=max_exact, alternative="two-sided")
        return float(min(1.0, result.pvalue))
    differences = a - b if paired else None
    if paired and np.all(differences == differences[0]):  # no spread: the t statistic is undefined
        return 1.0 if differences[0] == 0 else 0.0
    if not paired and np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    result = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
    return float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Sorted ascending, the i-th smallest (1-based) of m becomes max over j <= i of
    min(1, (m - j + 1) * p_(j)): a hypothesis is rejected at level alpha exactly when Holm's
    procedure rejects it."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    if np.any((p < 0) | (p > 1) | ~np.isfinite(p)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``x`` with the same row of ``y`` (2-D, same shape): Pearson's
    r of their average ranks, as scipy.stats.spearmanr computes it, for thousands of bootstrap
    replicates at once. NaN where a row is constant (undefined)."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))


def kendall_tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` with the same row of ``y``: over all pairs i < j,
    sum(sx * sy) / sqrt(sum(sx^2) * sum(sy^2)) with sx = sign(x_i - x_j) (a tie counts 0 in
    both the numerator and its own factor, which is tau-b's tie correction). NaN where a row is
    constant."""
    i, j = np.triu_indices(x.shape[1], k=1)
    sx = np.sign(x[:, i] - x[:, j])
    sy = np.sign(y[:, i] - y[:, j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(axis=1) / np.sqrt((sx ** 2).sum(axis=1) * (sy ** 2).sum(axis=1))


def ranks(values: Sequence[float | None]) -> list[int | None]:
    """Competition ranks of ``values``, highest first (1, 2, 2, 4); None (no score) is unranked."""
    present = sorted((v for v in values if v is not None), reverse=True)
    first = {}
    for position, v in enumerate(present, start=1):
        first.setdefault(v, position)
    return [None if v is None else first[v] for v in values]
