"""A leaderboard of groups (generators, checkpoints) from scored inputs, as typed tables.

``leaderboard(rows, groups)`` is the whole computation for one set of scores: per group the
counts, the mean of each dimension with its 95 % bootstrap interval (the group's inputs
resampled, ``bootstrap`` times, seeded), the rank, and the groups it is significantly above.

Significance: every pair of groups is tested per dimension with a two-sided test of the
difference of their means (the exact permutation test for small groups, the t-test for larger
ones: ``stats.mean_difference_p``), and the p-values of a dimension are Holm-adjusted over all its
pairs; "above" lists the groups whose mean is lower at an adjusted p below ``alpha``. Two groups
that share inputs (the same ids: two results files of the same videos) are tested paired, on the
inputs they share; other pairs unpaired. A group needs two scores to be tested.

Rows are result rows of `lmmeval score` (dicts). A row with an ``error`` has no scores: it is
counted as failed and left out; so is an out-of-distribution row unless ``include_ood``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..labels import DIMENSIONS
from .stats import holm, mean_ci, mean_difference_p, ranks, rng_for, test_name

# Below this many shared inputs two groups are compared unpaired.
MIN_PAIRED = 2


@dataclass(frozen=True)
class DimensionScore:
    """One group's result in one dimension."""

    mean: float | None  # None: no input in the mean
    ci_low: float | None  # the 95 % bootstrap interval; None below two inputs
    ci_high: float | None
    rank: int | None  # 1 = highest mean; ties share a rank
    above: tuple[str, ...] = ()  # groups significantly lower (Holm-adjusted)


@dataclass(frozen=True)
class GroupEntry:
    """One row of a leaderboard."""

    group: str
    inputs: int  # rows of the group
    used: int  # rows in the means
    failed: int  # rows with an error (never in the means)
    out_of_distribution: int  # scored rows flagged out of distribution
    low_confidence: int  # scored rows flagged low-confidence (kept in the means)
    scores: dict[str, DimensionScore]


@dataclass(frozen=True)
class Comparison:
    """The test of one pair of groups in one dimension."""

    dimension: str
    a: str
    b: str
    difference: float  # mean(a) - mean(b), over the inputs tested
    paired: bool
    n: tuple[int, int]  # inputs tested: (a, b); paired: the shared inputs, twice
    p: float  # two-sided p-value
    test: str  # "exact permutation", "Welch t" or "paired t"
    p_holm: float  # Holm-adjusted over all pairs of the dimension
    significant: bool  # p_holm < alpha


@dataclass
class Leaderboard:
    """Groups with their scores, best first by the first dimension, and every pairwise test."""

    name: str  # what was scored: a results file's label, or "MOS"
    entries: list[GroupEntry]
    comparisons: list[Comparison]
    dimensions: tuple[str, ...] = DIMENSIONS
    bootstrap: int = 2000
    seed: int = 0
    alpha: float = 0.05
    include_ood: bool = False
    untested: list[tuple[str, str]] = field(default_factory=list)  # pairs with fewer than 2 scores

    def entry(self, group: str) -> GroupEntry:
        for e in self.entries:
            if e.group == group:
                return e
        raise KeyError(f"no group {group!r} in leaderboard {self.name!r}")

    @property
    def groups(self) -> list[str]:
        return [e.group for e in self.entries]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["untested"] = [list(p) for p in self.untested]
        return out


def is_used(row: dict, include_ood: bool) -> bool:
    """Whether a row's scores count: scored, and in distribution unless ``include_ood``."""
    return row.get("error") is None and (include_ood or not row.get("out_of_distribution"))


def _group_of(rows: Sequence[dict], groups) -> list[str]:
    """Each row's group: ``groups`` is a sequence parallel to ``rows``, a mapping from a row's id
    (or path) to its group, or a function of the row."""
    if callable(groups) and not isinstance(groups, Mapping):
        out = [groups(r) for r in rows]
    elif isinstance(groups, Mapping):
        out = [groups.get(r.get("id"), groups.get(r.get("path"))) for r in rows]
    else:
        out = list(groups)
        if len(out) != len(rows):
            raise ValueError(f"groups has {len(out)} entries for {len(rows)} rows")
    for r, g in zip(rows, out):
        if not isinstance(g, str) or not g:
            raise ValueError(f"input {r.get('id')!r} ({r.get('path')}) has no group (got {g!r})")
    return out


def leaderboard(rows: Sequence[dict], groups, *, dimensions: Sequence[str] = DIMENSIONS, bootstrap: int = 2000,
                seed: int = 0, alpha: float = 0.05, include_ood: bool = False, name: str = "results") -> Leaderboard:
    """The leaderboard of ``rows`` (result rows of `lmmeval score`) grouped by ``groups``.

    ``groups``: a sequence parallel to ``rows``, a mapping {id or path: group}, or a function
    row -> group. Entries are sorted by the mean of the first dimension, highest first (groups
    without a score last). Reproducible: the same ``seed`` gives the same intervals (the tests
    are deterministic)."""
    if bootstrap < 100:
        raise ValueError(f"bootstrap must be at least 100 resamples, got {bootstrap}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    rows = list(rows)
    of = _group_of(rows, groups)
    members: dict[str, list[dict]] = {}
    for r, g in zip(rows, of):
        members.setdefault(g, []).append(r)
    for g, rs in members.items():
        ids = [r.get("id") for r in rs]
        if len(set(ids)) < len(ids):
            twice = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"input {twice!r} appears twice in group {g!r}")
    # Per dimension, per group: {id: score} of the rows in the means.
    scores = {d: {g: {r["id"]: float(r[d]) for r in rs if is_used(r, include_ood)} for g, rs in members.items()}
              for d in dimensions}

    comparisons, untested = _compare(scores, dimensions, alpha)
    table = {}
    for d in dimensions:
        means = {g: (float(np.mean(list(v.values()))) if v else None) for g, v in scores[d].items()}
        rank = dict(zip(means, ranks(list(means.values()))))
        for g, v in scores[d].items():
            ci = mean_ci(np.fromiter(v.values(), float), bootstrap, rng_for(seed, name, g, d)) if v else None
            above = [loser for c in comparisons if c.dimension == d and c.significant
                     for winner, loser in [_order(c)] if winner == g]
            table[g, d] = DimensionScore(mean=means[g], ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
                                         rank=rank[g], above=tuple(sorted(above, key=lambda h: -means[h])))
    entries = []
    for g, rs in members.items():
        scored = [r for r in rs if r.get("error") is None]
        entries.append(GroupEntry(group=g, inputs=len(rs), used=sum(is_used(r, include_ood) for r in rs),
                                  failed=len(rs) - len(scored),
                                  out_of_distribution=sum(bool(r.get("out_of_distribution")) for r in scored),
                                  low_confidence=sum(bool(r.get("low_confidence")) for r in scored),
                                  scores={d: table[g, d] for d in dimensions}))
    first = dimensions[0]
    entries.sort(key=lambda e: (e.scores[first].mean is None, -(e.scores[first].mean or 0.0), e.group))
    return Leaderboard(name=name, entries=entries, comparisons=comparisons, dimensions=tuple(dimensions),
                       bootstrap=bootstrap, seed=seed, alpha=alpha, include_ood=include_ood, untested=untested)


def _order(c: Comparison) -> tuple[str, str]:
    """(higher, lower) of a tested pair."""
    return (c.a, c.b) if c.difference > 0 else (c.b, c.a)


def _compare(scores: dict, dimensions, alpha: float) -> tuple[list[Comparison], list[tuple[str, str]]]:
    """Every pair of groups tested in every dimension, Holm-adjusted per dimension."""
    comparisons, untested = [], []
    for d in dimensions:
        tests = []
        for a, b in itertools.combinations(sorted(scores[d]), 2):
            sa, sb = scores[d][a], scores[d][b]
            shared = sorted(sa.keys() & sb.keys())
            paired = len(shared) >= MIN_PAIRED
            x = np.array([sa[i] for i in shared] if paired else list(sa.values()))
            y = np.array([sb[i] for i in shared] if paired else list(sb.values()))
            if len(x) < 2 or len(y) < 2:
                if d == dimensions[0]:
                    untested.append((a, b))
                continue
            p = mean_difference_p(x, y, paired)
            tests.append((a, b, float(x.mean() - y.mean()), paired, (len(x), len(y)), p))
        adjusted = holm([t[-1] for t in tests])
        comparisons += [Comparison(dimension=d, a=a, b=b, difference=diff, paired=paired, n=n, p=p,
                                   test=test_name(*n, paired), p_holm=q, significant=q < alpha)
                        for (a, b, diff, paired, n, p), q in zip(tests, adjusted)]
    return comparisons, untested
