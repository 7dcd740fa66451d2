"""Evaluation metrics: score correlations against MOS, and saliency-map metrics.

Two families live here, both plain numpy/scipy (no torch) so they can be used
on any machine that only has the predictions on disk:

1. Correlations between predicted scores and mean opinion scores (MOS):
   SRCC (Spearman), PLCC (Pearson), KRCC (Kendall tau-b), plus the optional
   VQEG-style nonlinear (logistic) mapping of predictions onto the MOS scale
   before PLCC is computed.

2. Saliency metrics for the predicted distortion-saliency maps, ported from
   the MIT saliency benchmark MATLAB code (github.com/cvzoya/saliency, folder
   code_forMetrics): AUC_Judd.m, AUC_Borji.m, NSS.m, CC.m, similarity.m and
   KLdiv.m. Where MATLAB would quietly return NaN (no fixations, a constant
   map, ...) we raise ValueError instead: a NaN in one clip is easily dropped
   by a later nanmean and would silently inflate the reported average.

Every function refuses bad input (wrong shape, NaN/inf, too few samples) with a
ValueError that names what was wrong; nothing is ever dropped silently.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image
from scipy import integrate, optimize, stats

# MATLAB's eps (2^-52), used by KLdiv.m inside the log and the denominator.
MATLAB_EPS = float(np.finfo(np.float64).eps)

FITS = ("logistic4", "logistic5")

# -----------------------------------------------------------------------------
# input checking shared by everything below


def _positions(bad: np.ndarray, limit: int = 10) -> str:
    """Human-readable list of the positions flagged in the boolean array `bad`."""
    idx = np.argwhere(bad)
    shown = [tuple(int(v) for v in row) if len(row) > 1 else int(row[0]) for row in idx[:limit]]
    more = f" ... ({len(idx)} in total)" if len(idx) > limit else ""
    return f"{shown}{more}"


def _as_float_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric, could not convert it to float: {e}") from e
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} contains NaN/inf at positions {_positions(bad)}")


def _check_pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (predictions, MOS) pair for the correlation metrics."""
    p = _as_float_array(pred, "pred")
    m = _as_float_array(mos, "mos")
    for arr, name in ((p, "pred"), (m, "mos")):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if len(p) != len(m):
        raise ValueError(f"pred and mos must have the same length, got {len(p)} and {len(m)}")
    if len(p) < 3:
        raise ValueError(f"need at least 3 samples for a correlation, got {len(p)}")
    _check_finite(p, "pred")
    _check_finite(m, "mos")
    # a constant vector has zero variance: every correlation coefficient is 0/0
    for arr, name in ((p, "pred"), (m, "mos")):
        if np.all(arr == arr[0]):
            raise ValueError(f"{name} is constant (all {arr[0]!r}); correlation is undefined")
    return p, m


# -----------------------------------------------------------------------------
# correlation metrics


def srcc(pred, mos) -> float:
    """Spearman rank-order correlation coefficient (scipy.stats.spearmanr)."""
    p, m = _check_pair(pred, mos)
    return float(stats.spearmanr(p, m)[0])


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the raw (unmapped) predictions with MOS."""
    p, m = _check_pair(pred, mos)
    return float(stats.pearsonr(p, m)[0])


def krcc(pred, mos) -> float:
    """Kendall rank correlation, tau-b variant (handles ties; scipy's default)."""
    p, m = _check_pair(pred, mos)
    return float(stats.kendalltau(p, m, variant="b")[0])


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2.

    b1/b2 are the upper/lower asymptotes, b3 the midpoint, |b4| the width.
    """
    # exp overflows to inf for far-out x during the fit; 1/(1+inf) = 0 is the right limit
    with np.errstate(over="ignore"):
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


def logistic5(x: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    """VQEG 5-parameter logistic: b1*(0.5 - 1/(1 + exp(b2*(x - b3)))) + b4*x + b5."""
    with np.errstate(over="ignore"):
        return b1 * (0.5 - 1.0 / (1.0 + np.exp(b2 * (x - b3)))) + b4 * x + b5


def fit_logistic(pred, mos, fit: str = "logistic5") -> tuple[np.ndarray, list[float]]:
    """Fit `fit` ("logistic4" or "logistic5") mapping pred -> mos by least squares.

    Returns (mapped predictions, fitted parameters [b1, b2, ...]). Raises
    RuntimeError if scipy.optimize.curve_fit does not converge; we never fall
    back to the unmapped predictions, since that would silently change what
    the reported PLCC means.
    """
    p, m = _check_pair(pred, mos)
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS} or None, got {fit!r}")

    # Initial guesses scaled to the data so the optimiser starts near a sensible
    # curve whatever the units of pred and mos are. The sign of the linear
    # correlation picks an increasing or decreasing sigmoid, so anti-correlated
    # predictors start on the right branch too.
    sign = 1.0 if np.corrcoef(p, m)[0, 1] >= 0 else -1.0
    p_std = float(np.std(p))
    func: Callable[..., np.ndarray]
    if fit == "logistic4":
        func = logistic4
        hi, lo = float(np.max(m)), float(np.min(m))
        b1, b2 = (hi, lo) if sign > 0 else (lo, hi)
        # width ~ std(pred): the central slope (b1-b2)/(4|b4|) is then about range(mos)/range(pred)
        p0 = [b1, b2, float(np.mean(p)), p_std]
    else:
        func = logistic5
        # b1*(0.5 - 1/(1+exp(b2*u))) spans (-b1/2, b1/2): b1 ~ range of mos, b5 its centre
        p0 = [sign * float(np.ptp(m)), 1.0 / p_std, float(np.mean(p)), 0.0, float(np.mean(m))]

    try:
        params, _ = optimize.curve_fit(func, p, m, p0=p0, maxfev=100_000)
    except RuntimeError as e:  # curve_fit raises RuntimeError when it hits maxfev
        raise RuntimeError(
            f"{fit} fit of predictions onto MOS did not converge ({e}); the fitted PLCC "
            f"is undefined for this data. Report the raw plcc, or try the other fit."
        ) from e
    mapped = func(p, *params)
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(mapped))):
        raise RuntimeError(f"{fit} fit produced non-finite parameters {params.tolist()}")
    return mapped, [float(v) for v in params]


def correlations(pred, mos, fit: str | None = None) -> dict:
    """All correlation metrics of predicted scores vs MOS, as a dict.

    Keys:
      srcc, krcc  rank correlations of the raw predictions (a monotone mapping
                  cannot change them, so they are never fitted).
      plcc        Pearson correlation of the RAW, unmapped predictions with MOS.
      n           number of samples.
    When fit is "logistic4" or "logistic5" additionally:
      plcc_fitted Pearson correlation of the predictions AFTER the nonlinear
                  logistic mapping onto the MOS scale (the number usually
                  reported as "PLCC" in VQA/IQA papers, following VQEG).
      fit_params  the fitted [b1, b2, b3, b4(, b5)], see logistic4/logistic5.
    """
    p, m = _check_pair(pred, mos)
    if fit is not None and fit not in FITS:
        raise ValueError(f"fit must be one of {FITS} or None, got {fit!r}")
    out: dict = {
        "srcc": srcc(p, m),
        "plcc": plcc(p, m),
        "krcc": krcc(p, m),
        "n": int(len(p)),
    }
    if fit is not None:
        mapped, params = fit_logistic(p, m, fit)
        if np.all(mapped == mapped[0]):
            raise RuntimeError(f"{fit} fit collapsed to a constant; fitted PLCC is undefined")
        out["plcc_fitted"] = float(stats.pearsonr(mapped, m)[0])
        out["fit_params"] = params
    return out


# -----------------------------------------------------------------------------
# saliency metrics (MIT saliency benchmark, cvzoya/saliency/code_forMetrics)


def _as_map(x, name: str) -> np.ndarray:
    arr = _as_float_array(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    _check_finite(arr, name)
    return arr


def _as_fixations(x, name: str = "fixations") -> np.ndarray:
    """Binary fixation map -> boolean mask. Positive = fixated, like `F>0` in AUC_Judd.m."""
    arr = _as_map(x, name)
    if (arr < 0).any():
        # AUC_*.m use F>0 while NSS.m uses logical(F) (nonzero); refusing negatives
        # makes the two readings agree.
        raise ValueError(f"{name} has negative values at positions {_positions(arr < 0)}")
    mask = arr > 0
    if not mask.any():
        # MATLAB returns NaN here; we refuse so the clip cannot be averaged away unnoticed
        raise ValueError(f"{name} contains no fixations (no positive value); metric undefined")
    return mask


def _resize_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map to `shape` (rows, cols) with bicubic interpolation.

    Bicubic matches MATLAB imresize's default method (also a=-0.5 Keys kernel,
    antialiased when shrinking), so results are close to, though not bit-identical
    with, the MATLAB benchmark. Done in float32 (PIL mode "F"), returned as float64.
    Maps that already have the right shape are returned unchanged.
    """
    if tuple(pred.shape) == tuple(shape):
        return pred
    h, w = int(shape[0]), int(shape[1])
    img = Image.fromarray(np.ascontiguousarray(pred, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.BICUBIC), dtype=np.float64)


def _minmax(s: np.ndarray, name: str) -> np.ndarray:
    lo, hi = s.min(), s.max()
    if hi == lo:
        # MATLAB divides by zero here and gets an all-NaN map
        raise ValueError(f"{name} is constant ({lo!r}); min-max normalisation is undefined")
    return (s - lo) / (hi - lo)


def _zscore(s: np.ndarray, name: str) -> np.ndarray:
    # test constancy exactly: std() of a constant map can come out as ~1e-17 from
    # rounding in the mean, which would turn an undefined score into noise
    if s.max() == s.min():
        raise ValueError(f"{name} is constant; its standard deviation is 0 so the metric is undefined")
    return (s - s.mean()) / s.std(ddof=1)  # MATLAB std() normalises by N-1


def auc_judd(pred, fixations, jitter: bool = True, seed: int = 0) -> float:
    """AUC-Judd, following AUC_Judd.m of the MIT saliency benchmark.

    pred is resized (bicubic) to the fixation map's shape if needed. With
    `jitter`, uniform noise in [0, 1e-7) from a seeded numpy Generator is added
    to break ties (deterministic for a given `seed`). The map is min-max
    normalised; the thresholds are the saliency values at the fixations, sorted
    descending; tp(i) = i/Nfix, fp(i) = (#{S >= thr_i} - i)/(Npix - Nfix); the
    curve is padded with (0, 0) and (1, 1) and integrated with the trapezoid rule.

    A constant prediction with jitter=True becomes pure noise and scores around
    chance (0.5); with jitter=False min-max normalisation is undefined (MATLAB:
    NaN) and we raise ValueError. No fixations -> ValueError (MATLAB: NaN).
    """
    fix = _as_fixations(fixations)
    s = _resize_to(_as_map(pred, "pred"), fix.shape)
    if jitter:
        s = s + np.random.default_rng(seed).random(s.shape) / 1e7
    s = _minmax(s, "pred").ravel()
    f = fix.ravel()

    sth = s[f]  # saliency values at fixated pixels
    n_fix, n_pix = sth.size, s.size
    if n_fix == n_pix:
        # fp's denominator (non-fixated pixels) would be 0: MATLAB gives NaN
        raise ValueError("fixations cover every pixel; AUC-Judd needs non-fixated pixels")
    thresholds = np.sort(sth)[::-1]
    # #{S >= t} for every threshold at once: count of sorted S at or above t
    s_sorted = np.sort(s)
    above = n_pix - np.searchsorted(s_sorted, thresholds, side="left")
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(integrate.trapezoid(tp, fp))


def _matlab_colon(stop: float, step: float) -> np.ndarray:
    """MATLAB `0:step:stop`: includes `stop` when it lies on the grid up to rounding.

    np.arange(0, stop, step) would drop the endpoint (and e.g. 0.3/0.1 =
    2.9999999999999996 floors to 2). MATLAB's colon allows a small tolerance and
    then places its last element exactly at `stop`, which we mimic.
    """
    ratio = stop / step
    n = int(np.floor(ratio + 1e-10))
    grid = np.arange(n + 1) * step
    if abs(ratio - n) <= 1e-10:
        grid[-1] = stop  # on the grid: the endpoint is exactly `stop`, as in MATLAB
    return grid


def auc_borji(pred, fixations, n_splits: int = 100, step: float = 0.1, seed: int = 0) -> float:
    """AUC-Borji, following AUC_Borji.m of the MIT saliency benchmark.

    pred is resized (bicubic) to the fixation map's shape if needed and min-max
    normalised. For each of `n_splits` splits, Nfix pixels are drawn uniformly
    with replacement from the whole map (seeded numpy Generator, so the result
    is deterministic for a given `seed`) as negatives. Thresholds sweep
    `0:step:max` (MATLAB colon, endpoint included when on the grid) from high to
    low; tp = #{Sfix >= t}/Nfix, fp = #{Srand >= t}/Nfix; the curve is padded with
    (0, 0) and (1, 1), integrated with the trapezoid rule, and averaged over splits.

    Like the current AUC_Borji.m, at least 2 fixations are required (MATLAB
    returns NaN for <= 1; we raise ValueError). A constant prediction cannot be
    min-max normalised (MATLAB: NaN) -> ValueError.
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    fix = _as_fixations(fixations)
    if fix.sum() <= 1:
        raise ValueError(f"fixations has {int(fix.sum())} fixation; AUC_Borji.m needs at least 2")
    s = _minmax(_resize_to(_as_map(pred, "pred"), fix.shape), "pred").ravel()
    f = fix.ravel()

    sth = s[f]
    n_fix, n_pix = sth.size, s.size
    rng = np.random.default_rng(seed)
    randfix = s[rng.integers(0, n_pix, size=(n_fix, n_splits))]

    aucs = np.empty(n_splits)
    for k in range(n_splits):
        curfix = randfix[:, k]
        top = max(sth.max(), curfix.max())
        thresholds = _matlab_colon(top, step)[::-1]
        tp = (sth[None, :] >= thresholds[:, None]).sum(axis=1) / n_fix
        fp = (curfix[None, :] >= thresholds[:, None]).sum(axis=1) / n_fix
        tp = np.concatenate([[0.0], tp, [1.0]])
        fp = np.concatenate([[0.0], fp, [1.0]])
        aucs[k] = integrate.trapezoid(tp, fp)
    return float(aucs.mean())


def nss(pred, fixations) -> float:
    """Normalized Scanpath Saliency, following NSS.m.

    pred is resized (bicubic) to the fixation map's shape, z-normalised with the
    N-1 standard deviation (MATLAB std), and averaged over the fixated pixels.
    A constant prediction has std 0 (MATLAB: NaN) -> ValueError.
    """
    fix = _as_fixations(fixations)
    s = _zscore(_resize_to(_as_map(pred, "pred"), fix.shape), "pred")
    return float(s[fix].mean())


def cc(pred, gt) -> float:
    """Linear correlation coefficient between two maps, following CC.m.

    pred is resized (bicubic) to gt's shape; both are z-normalised (N-1 std) and
    their Pearson correlation (MATLAB corr2) is returned. A constant pred or gt
    has std 0 (MATLAB: NaN) -> ValueError. Unlike CC.m (imresize before
    im2double) we convert to float first, so uint8 inputs are not re-quantised.
    """
    g = _zscore(_as_map(gt, "gt"), "gt")
    s = _zscore(_resize_to(_as_map(pred, "pred"), g.shape), "pred")
    # corr2 on already-centred maps: sum(a*b) / sqrt(sum(a^2) * sum(b^2))
    return float(np.sum(s * g) / np.sqrt(np.sum(s * s) * np.sum(g * g)))


def _sim_normalise(s: np.ndarray, name: str) -> np.ndarray:
    # similarity.m: an all-zero map is left as is; otherwise min-max to [0, 1], then sum to 1
    if not s.any():
        return s
    s = _minmax(s, name)
    return s / s.sum()


def sim(pred, gt) -> float:
    """Similarity (histogram intersection), following similarity.m.

    pred is resized (bicubic) to gt's shape; each map is min-max normalised and
    then divided by its sum; the score is sum(min(pred, gt)) in [0, 1].
    As in similarity.m an all-zero pred stays all zero and scores 0. A constant
    non-zero pred (MATLAB: NaN) -> ValueError. A gt with no positive mass, or a
    constant gt, -> ValueError (MATLAB would return 0 or NaN).
    """
    g = _as_map(gt, "gt")
    if not (g > 0).any():
        raise ValueError("gt has no positive value; SIM against an empty ground truth is undefined")
    g = _sim_normalise(g, "gt")
    s = _sim_normalise(_resize_to(_as_map(pred, "pred"), g.shape), "pred")
    return float(np.minimum(s, g).sum())


def kld(pred, gt) -> float:
    """KL divergence KL(gt || pred) of the maps as distributions, following KLdiv.m.

    pred is resized (bicubic) to gt's shape; each map is divided by its sum (if
    non-zero) and the score is sum(gt * log(eps + gt / (pred + eps))) with
    eps = 2.2204e-16 (MATLAB eps). Lower is better; 0 for identical maps.
    Both maps must be non-negative (ValueError otherwise: the log would be
    undefined). Bicubic resizing can ring slightly below 0; those values are
    clipped to 0 (MATLAB would return a complex number). An all-zero pred is
    kept as in KLdiv.m and gets a large finite score; a gt without positive
    mass -> ValueError (MATLAB would return a meaningless 0).
    """
    g = _as_map(gt, "gt")
    p = _as_map(pred, "pred")
    for arr, name in ((p, "pred"), (g, "gt")):
        if (arr < 0).any():
            raise ValueError(f"{name} has negative values at positions {_positions(arr < 0)}")
    if not g.any():
        raise ValueError("gt has no positive value; KL divergence to an empty ground truth is undefined")
    p = np.clip(_resize_to(p, g.shape), 0.0, None)
    if p.any():
        p = p / p.sum()
    g = g / g.sum()
    return float(np.sum(g * np.log(MATLAB_EPS + g / (p + MATLAB_EPS))))


def saliency_metrics(pred, gt_map, fixations, seed: int = 0) -> dict:
    """All six saliency metrics of `pred` as a dict.

    gt_map is the continuous ground-truth saliency (density) map, used by cc,
    sim and kld; fixations is the binary fixation map of the same shape, used
    by auc_judd, auc_borji and nss. `seed` drives the AUC randomness. Any metric
    that is undefined for these inputs raises ValueError (see each function).
    """
    g = _as_map(gt_map, "gt_map")
    f = _as_map(fixations, "fixations")
    if g.shape != f.shape:
        raise ValueError(f"gt_map shape {g.shape} differs from fixations shape {f.shape}")
    return {
        "auc_judd": auc_judd(pred, f, seed=seed),
        "auc_borji": auc_borji(pred, f, seed=seed),
        "nss": nss(pred, f),
        "cc": cc(pred, g),
        "sim": sim(pred, g),
        "kld": kld(pred, g),
    }
