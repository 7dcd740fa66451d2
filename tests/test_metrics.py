"""Tests for lmmeval.metrics: correlations vs scipy / hand-worked values, and
saliency metrics on known cases (perfect, inverted, constant, tiny hand-worked maps)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from lmmeval.eval import metrics as M

# -----------------------------------------------------------------------------
# correlations


def test_correlations_match_scipy_on_random_data():
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 200)
    pred = mos + rng.normal(0, 0.8, 200)
    assert M.srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-12)
    assert M.plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-12)
    assert M.krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos)[0], abs=1e-12)
    out = M.correlations(pred, mos)
    assert set(out) == {"srcc", "plcc", "krcc", "n"}
    assert out["n"] == 200
    assert out["srcc"] == pytest.approx(M.srcc(pred, mos))


def test_correlations_hand_worked_five_points():
    # pred = [1,2,3,4,5], mos = [2,1,4,3,5]; both are their own ranks.
    # Spearman: d = [-1,1,-1,1,0], sum d^2 = 4, rho = 1 - 6*4/(5*(25-1)) = 0.8
    # Kendall: 10 pairs, discordant are (1,2) and (3,4) -> (8-2)/10 = 0.6
    # Pearson: dx = [-2,-1,0,1,2], dy = [-1,-2,1,0,2], sum dx*dy = 8,
    #          sum dx^2 = sum dy^2 = 10 -> r = 0.8
    pred = [1, 2, 3, 4, 5]
    mos = [2, 1, 4, 3, 5]
    assert M.srcc(pred, mos) == pytest.approx(0.8)
    assert M.krcc(pred, mos) == pytest.approx(0.6)
    assert M.plcc(pred, mos) == pytest.approx(0.8)
    # a reversed predictor flips all signs
    assert M.srcc([-v for v in pred], mos) == pytest.approx(-0.8)


def test_correlations_reject_nan_and_names_positions():
    pred = [1.0, 2.0, np.nan, 4.0, np.inf]
    with pytest.raises(ValueError, match=r"pred.*\[2, 4\]"):
        M.correlations(pred, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match=r"mos.*\[0\]"):
        M.srcc([1, 2, 3], [np.nan, 1, 2])


@pytest.mark.parametrize(
    "pred, mos, msg",
    [
        ([1, 2, 3, 4], [1, 2, 3], "same length"),
        ([1, 2], [1, 2], "at least 3"),
        ([[1, 2, 3]], [[1, 2, 3]], "1-D"),
        ([1, 1, 1, 1], [1, 2, 3, 4], "pred is constant"),
        ([1, 2, 3, 4], [3, 3, 3, 3], "mos is constant"),
        (["a", "b", "c"], [1, 2, 3], "numeric"),
    ],
)
def test_correlations_reject_bad_input(pred, mos, msg):
    for fn in (M.srcc, M.plcc, M.krcc, M.correlations):
        with pytest.raises(ValueError, match=msg):
            fn(pred, mos)


def test_correlations_reject_unknown_fit():
    with pytest.raises(ValueError, match="fit"):
        M.correlations([1, 2, 3, 4], [1, 3, 2, 4], fit="cubic")


def _sigmoid_data():
    # MOS is a steep sigmoid of the predictions (equivalently the predictions are
    # a logit-like monotone transform of MOS): raw PLCC suffers, a logistic fit recovers it.
    rng = np.random.default_rng(0)
    pred = np.sort(rng.uniform(-3, 3, 60))
    mos = M.logistic4(pred, 4.8, 1.2, 0.3, 0.35)
    return pred, mos


@pytest.mark.parametrize("fit", ["logistic4", "logistic5"])
def test_logistic_fit_recovers_sigmoid_relation(fit):
    pred, mos = _sigmoid_data()
    out = M.correlations(pred, mos, fit=fit)
    assert out["plcc"] < 0.95  # the raw, unmapped PLCC is clearly below 1
    assert out["plcc_fitted"] > 0.999
    assert out["plcc"] == pytest.approx(stats.pearsonr(pred, mos)[0])
    assert len(out["fit_params"]) == (4 if fit == "logistic4" else 5)
    # plcc_fitted really is PLCC of the mapping given by fit_params
    func = M.logistic4 if fit == "logistic4" else M.logistic5
    mapped = func(pred, *out["fit_params"])
    assert out["plcc_fitted"] == pytest.approx(stats.pearsonr(mapped, mos)[0])
    # the fitted mapping is monotone on the data, so rank correlation is unchanged
    assert out["srcc"] == pytest.approx(1.0)
    assert M.srcc(mapped, mos) == pytest.approx(out["srcc"])


def test_logistic_fit_handles_anticorrelated_predictions():
    pred, mos = _sigmoid_data()
    out = M.correlations(-pred, mos, fit="logistic4")
    assert out["srcc"] == pytest.approx(-1.0)
    assert out["plcc_fitted"] > 0.999  # the fitted curve is decreasing, mapping onto MOS


def test_logistic_fit_failure_raises_not_falls_back(monkeypatch):
    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(M.optimize, "curve_fit", no_convergence)
    pred, mos = _sigmoid_data()
    with pytest.raises(RuntimeError, match="did not converge"):
        M.correlations(pred, mos, fit="logistic5")


# -----------------------------------------------------------------------------
# saliency


def _scene(shape=(48, 64), n_fix=25, seed=3):
    """Binary fixation map clustered around two centres, and its blurred density map."""
    rng = np.random.default_rng(seed)
    fix = np.zeros(shape)
    centres = [(14, 18), (32, 46)]
    for k in range(n_fix):
        cy, cx = centres[k % 2]
        y = int(np.clip(cy + rng.normal(0, 3), 0, shape[0] - 1))
        x = int(np.clip(cx + rng.normal(0, 3), 0, shape[1] - 1))
        fix[y, x] = 1
    gt = ndimage.gaussian_filter(fix, sigma=4)
    gt = gt / gt.max()
    return fix, gt


def test_perfect_prediction():
    fix, gt = _scene()
    assert M.cc(gt, gt) == pytest.approx(1.0)
    assert M.sim(gt, gt) == pytest.approx(1.0)
    assert M.kld(gt, gt) == pytest.approx(0.0, abs=1e-10)
    assert M.auc_judd(gt, fix) > 0.9
    assert M.auc_borji(gt, fix) > 0.8
    assert M.nss(gt, fix) > 1.0


def test_inverted_prediction():
    fix, gt = _scene()
    inv = 1.0 - gt
    assert M.cc(inv, gt) == pytest.approx(-1.0)
    assert M.auc_judd(inv, fix) < 0.5
    assert M.auc_borji(inv, fix) < 0.5
    assert M.nss(inv, fix) < 0
    assert M.nss(inv, fix) == pytest.approx(-M.nss(gt, fix))  # z-scoring is affine-invariant
    assert M.sim(inv, gt) < M.sim(gt, gt)
    assert M.kld(inv, gt) > M.kld(gt, gt)


def test_nss_by_hand():
    # pred [[0, 1], [2, 3]]: mean 1.5, std (N-1) = sqrt(5/3); fixation on the 3
    # -> (3 - 1.5) / sqrt(5/3) = 1.5 * sqrt(0.6)
    assert M.nss([[0, 1], [2, 3]], [[0, 0], [0, 1]]) == pytest.approx(1.5 * np.sqrt(0.6))


def test_constant_prediction_behaviour():
    fix, gt = _scene()
    const = np.full_like(gt, 0.4)
    # jitter turns a constant map into pure noise: chance-level and reproducible
    a = M.auc_judd(const, fix, jitter=True, seed=5)
    assert 0.3 < a < 0.7
    assert a == M.auc_judd(const, fix, jitter=True, seed=5)
    with pytest.raises(ValueError, match="constant"):
        M.auc_judd(const, fix, jitter=False)
    with pytest.raises(ValueError, match="constant"):
        M.auc_borji(const, fix)
    with pytest.raises(ValueError, match="constant"):
        M.nss(const, fix)
    with pytest.raises(ValueError, match="constant"):
        M.cc(const, gt)
    with pytest.raises(ValueError, match="constant"):
        M.cc(gt, const)
    with pytest.raises(ValueError, match="constant"):
        M.sim(const, gt)
    # similarity.m leaves an all-zero map as zeros: no overlap at all
    assert M.sim(np.zeros_like(gt), gt) == 0.0
    # a constant map is the uniform distribution: KLD = KL(gt || uniform)
    g = gt.ravel() / gt.sum()
    assert M.kld(const, gt) == pytest.approx(stats.entropy(g, np.full(g.size, 1.0 / g.size)), rel=1e-9)


def test_auc_judd_hand_worked_1x4():
    # S = [0, 0.5, 0.25, 1] (already min-max normalised), fixations at 0.5 and 0.25.
    # Nfix = 2, Npix = 4, 2 non-fixated pixels. Thresholds (descending): 0.5, 0.25.
    #   t=0.5 : #{S>=0.5}=2  -> tp=1/2, fp=(2-1)/2=0.5
    #   t=0.25: #{S>=0.25}=3 -> tp=2/2, fp=(3-2)/2=0.5
    # tp = [0, .5, 1, 1], fp = [0, .5, .5, 1]
    # trapz = .5*(0+.5)/2 + 0 + .5*(1+1)/2 = 0.125 + 0.5 = 0.625
    # (The rank/Mann-Whitney AUC would be 0.5: Judd's curve interpolates between
    # fixation thresholds, which is what we reproduce.)
    s = np.array([[0.0, 0.5, 0.25, 1.0]])
    f = np.array([[0, 1, 1, 0]])
    assert M.auc_judd(s, f, jitter=False) == pytest.approx(0.625)
    # min-max normalisation makes the score invariant to affine rescaling
    assert M.auc_judd(3 * s + 7, f, jitter=False) == pytest.approx(0.625)


def test_auc_judd_hand_worked_2x2_with_tie():
    # S = [[1, 0.5], [0.5, 0]], one fixation on a 0.5. Threshold 0.5:
    # #{S>=0.5}=3 (ties count as above) -> tp=1, fp=(3-1)/3=2/3.
    # tp = [0, 1, 1], fp = [0, 2/3, 1] -> trapz = (2/3)*(0+1)/2 + (1/3)*1 = 2/3
    s = [[1.0, 0.5], [0.5, 0.0]]
    f = [[0, 1], [0, 0]]
    assert M.auc_judd(s, f, jitter=False) == pytest.approx(2 / 3)


def test_auc_judd_jitter_deterministic_and_tiny():
    fix, gt = _scene()
    a0 = M.auc_judd(gt, fix, jitter=True, seed=0)
    assert a0 == M.auc_judd(gt, fix, jitter=True, seed=0)
    # jitter is 1e-7 in size: it only breaks ties, it does not move a smooth map's score
    assert a0 == pytest.approx(M.auc_judd(gt, fix, jitter=False), abs=1e-3)


def test_auc_borji_deterministic_and_good():
    fix, gt = _scene()
    a = M.auc_borji(gt, fix, seed=7)
    assert a == M.auc_borji(gt, fix, seed=7)
    assert a != M.auc_borji(gt, fix, seed=8)
    assert a > 0.5


def test_auc_borji_fine_grid_matches_rank_auc():
    # With a very fine threshold grid the per-split ROC is the empirical ROC of
    # fixated vs randomly drawn values; averaged over many splits it approaches
    # P(S_fix > S_any) + 0.5 P(tie), computed here over all pixel pairs.
    fix, gt = _scene()
    s = gt.ravel()
    sfix = s[fix.ravel() > 0]
    ref = np.mean((sfix[:, None] > s[None, :]) + 0.5 * (sfix[:, None] == s[None, :]))
    assert M.auc_borji(gt, fix, n_splits=300, step=1e-3, seed=0) == pytest.approx(ref, abs=0.01)


def test_auc_borji_includes_max_threshold_like_matlab_colon():
    # S = [1, 1, .95 x4, 0 x4], fixations on the two 1s, step 0.5.
    # MATLAB 0:0.5:1 = [0, .5, 1] includes 1, so per split with q1 = share of
    # random draws equal to 1: points (q1, 1) at t=1, (q1+q2, 1) at t=.5, (1, 1)
    # -> AUC = q1/2 + (1 - q1) = 1 - q1/2, expectation 1 - 0.2/2 = 0.9.
    # Dropping the endpoint (np.arange) would give 1 - (q1+q2)/2 -> 0.7.
    s = np.array([[1, 1, 0.95, 0.95, 0.95, 0.95, 0, 0, 0, 0]])
    f = np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]])
    assert M.auc_borji(s, f, n_splits=3000, step=0.5, seed=0) == pytest.approx(0.9, abs=0.02)


def test_matlab_colon():
    np.testing.assert_allclose(M._matlab_colon(1.0, 0.5), [0, 0.5, 1.0])
    # 0.3 / 0.1 = 2.9999999999999996 in floating point; MATLAB still gives 4 elements ending at 0.3
    g = M._matlab_colon(0.3, 0.1)
    assert len(g) == 4 and g[-1] == 0.3
    assert len(M._matlab_colon(0.95, 0.1)) == 10  # 0 .. 0.9


def test_kld_matches_scipy_entropy():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0.1, 1.0, (20, 30))
    pred = rng.uniform(0.1, 1.0, (20, 30))
    ref = stats.entropy(gt.ravel(), pred.ravel())  # normalises both, sum g log(g/p)
    assert M.kld(pred, gt) == pytest.approx(ref, abs=1e-9)
    assert M.kld(pred, gt) > 0


def test_sim_by_hand():
    # pred [0, 1, 1, 2] -> minmax [0, .5, .5, 1] -> /2 = [0, .25, .25, .5]
    # gt   [1, 1, 0, 0] -> minmax same         -> /2 = [.5, .5, 0, 0]
    # sum(min) = 0 + .25 + 0 + 0 = 0.25
    assert M.sim([[0, 1, 1, 2]], [[1, 1, 0, 0]]) == pytest.approx(0.25)


def test_cc_matches_pearson():
    rng = np.random.default_rng(4)
    a, b = rng.random((10, 12)), rng.random((10, 12))
    assert M.cc(a, b) == pytest.approx(stats.pearsonr(a.ravel(), b.ravel())[0])


def test_resizing_half_resolution_prediction():
    # a smooth prediction rendered at full and at half resolution gives nearly the same CC
    h, w = 64, 80
    fix, gt = _scene((h, w))

    def blob(hh, ww):
        y, x = np.mgrid[0:hh, 0:ww]
        y, x = (y + 0.5) / hh, (x + 0.5) / ww
        return np.exp(-((y - 0.35) ** 2 + (x - 0.4) ** 2) / 0.05)

    full, half = blob(h, w), blob(h // 2, w // 2)
    r = M._resize_to(half, (h, w))
    assert r.shape == (h, w)
    # bicubic error here is ~0.006 (bilinear ~0.010, nearest ~0.038)
    assert np.abs(r - full).max() < 0.008
    assert M.cc(half, gt) == pytest.approx(M.cc(full, gt), abs=0.01)
    assert M.nss(half, fix) == pytest.approx(M.nss(full, fix), abs=0.05)
    assert M.auc_judd(half, fix) == pytest.approx(M.auc_judd(full, fix), abs=0.02)
    assert M.kld(half, gt) == pytest.approx(M.kld(full, gt), abs=0.05)
    # same-shape maps pass through untouched
    assert M._resize_to(full, (h, w)) is full


def test_saliency_input_validation():
    fix, gt = _scene()
    with pytest.raises(ValueError, match="no fixations"):
        M.auc_judd(gt, np.zeros_like(fix))
    with pytest.raises(ValueError, match="no fixations"):
        M.nss(gt, np.zeros_like(fix))
    with pytest.raises(ValueError, match="at least 2"):
        one = np.zeros_like(fix)
        one[3, 3] = 1
        M.auc_borji(gt, one)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\)"):
        M.cc(np.zeros((2, 3, 4)), gt)
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        M.nss(gt, np.ones(5))
    bad = gt.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"pred.*\(1, 2\)"):
        M.sim(bad, gt)
    with pytest.raises(ValueError, match=r"gt.*\(1, 2\)"):
        M.kld(gt, bad)
    with pytest.raises(ValueError, match="negative"):
        M.kld(gt - 0.5, gt)
    with pytest.raises(ValueError, match="negative"):
        M.nss(gt, -fix)
    with pytest.raises(ValueError, match="no positive"):
        M.sim(gt, np.zeros_like(gt))


def test_saliency_metrics_dict():
    fix, gt = _scene()
    out = M.saliency_metrics(gt, gt, fix, seed=1)
    assert set(out) == {"auc_judd", "auc_borji", "nss", "cc", "sim", "kld"}
    assert out["cc"] == pytest.approx(1.0)
    assert out["auc_judd"] == M.auc_judd(gt, fix, seed=1)
    assert out["auc_borji"] == M.auc_borji(gt, fix, seed=1)
    assert out["nss"] == pytest.approx(M.nss(gt, fix))
    assert out["sim"] == pytest.approx(1.0) and out["kld"] == pytest.approx(0.0, abs=1e-9)  # a map against itself
    with pytest.raises(ValueError, match="differs"):
        M.saliency_metrics(gt, gt[:10], fix)
