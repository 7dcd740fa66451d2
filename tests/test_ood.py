"""The out-of-distribution flag (lmmeval.model.ood, `lmmeval calibrate-ood`): the distance against
scipy's Mahalanobis, the threshold calibration against the chi-square quantile it must approach, the
statistics saved and reloaded with a checkpoint, and the rows of `lmmeval score`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from scipy.stats import chi2

from lmmeval.model.ood import OOD_NAME, FeatureDistribution

PHOTO = Path(__file__).resolve().parents[1] / "lmmeval" / "assets" / "real_photo" / "face.jpg"


def _gaussian(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    cov = mix @ mix.T + 0.5 * np.eye(d)
    return rng.multivariate_normal(np.arange(d, dtype=float), cov, size=n), cov


def test_full_rank_score_is_scipy_mahalanobis_over_d():
    x, _ = _gaussian(400, 6)
    dist = FeatureDistribution.fit(x, components=6, folds=5)
    inverse = np.linalg.inv(np.cov(x, rowvar=False))  # the sample covariance (n - 1), as fitted
    probe = np.random.default_rng(1).normal(size=(5, 6)) * 3
    expected = [mahalanobis(p, x.mean(0), inverse) ** 2 / 6 for p in probe]
    np.testing.assert_allclose(dist.score(probe), expected, rtol=1e-6)


def test_threshold_approaches_the_chi_square_quantile_and_flags_one_percent():
    """Gaussian features in d = 4: d * score is chi-square with 4 degrees of freedom, so the held-out
    0.99 quantile must sit near chi2.ppf(0.99, 4) / 4, and about 1 % of fresh draws exceed it."""
    x, cov = _gaussian(6000, 4)
    dist = FeatureDistribution.fit(x, components=4, quantile=0.99)
    assert dist.threshold == pytest.approx(chi2.ppf(0.99, 4) / 4, rel=0.08)
    fresh = np.random.default_rng(7).multivariate_normal(np.arange(4, dtype=float), cov, size=20000)
    _, flagged = dist.flag(fresh)
    assert 0.005 < flagged.mean() < 0.016


def test_low_rank_model_keeps_the_rest_as_one_variance():
    """Features on a 3-dimensional plane in 20 dimensions plus isotropic noise of variance 0.01: three
    axes carry the plane, the rest variance is the noise's, and a typical fresh input scores about 1,
    while a point off the plane by ten noise sigmas scores far above the threshold."""
    rng = np.random.default_rng(0)
    plane = np.linalg.qr(rng.normal(size=(20, 3)))[0].T  # (3, 20) orthonormal
    def draw(n):
        return (rng.normal(size=(n, 3)) * [3.0, 2.0, 1.0]) @ plane + rng.normal(0, 0.1, size=(n, 20))
    dist = FeatureDistribution.fit(draw(3000), components=3)
    assert dist.rest_variance == pytest.approx(0.01, rel=0.05)
    np.testing.assert_allclose(np.abs(dist.axes @ plane.T).max(1), 1.0, atol=0.01)  # the plane's directions
    assert dist.score(draw(5000)).mean() == pytest.approx(1.0, abs=0.05)
    off = np.linalg.svd(plane, full_matrices=True)[2][3]  # a unit direction off the plane
    assert dist.score((np.zeros(20) + 10 * 0.1 * np.sqrt(17) * off)[None])[0] > 3 * dist.threshold


def test_bad_fits_are_refused():
    x, _ = _gaussian(50, 4)
    with pytest.raises(ValueError, match="too few"):
        FeatureDistribution.fit(x[:20], components=4)  # 5 folds of 4 axes need 30
    with pytest.raises(ValueError, match="quantile"):
        FeatureDistribution.fit(x, components=2, quantile=1.0)
    with pytest.raises(ValueError, match="finite"):
        FeatureDistribution.fit(np.full((50, 4), np.nan), components=2)
    with pytest.raises(ValueError, match="components must be >= 1, got 0"):
        FeatureDistribution.fit(x, components=0)
    with pytest.raises(ValueError, match="folds must be >= 2, got 1"):
        FeatureDistribution.fit(x, components=2, folds=1)
    dist = FeatureDistribution.fit(x, components=2)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        dist.score(np.zeros((3, 5)))


def test_saved_and_reloaded(tmp_path):
    x, _ = _gaussian(300, 8)
    dist = FeatureDistribution.fit(x, components=3)
    dist.fitted_on = "a test"
    dist.save(tmp_path)
    again = FeatureDistribution.load(tmp_path)
    assert (again.threshold, again.quantile, again.n_fit, again.fitted_on) == (dist.threshold, 0.99, 300, "a test")
    np.testing.assert_allclose(again.score(x[:10]), dist.score(x[:10]), rtol=1e-5)  # stored as float32
    assert FeatureDistribution.load(tmp_path / "none") is None
    (tmp_path / OOD_NAME).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="calibrate-ood"):
        FeatureDistribution.load(tmp_path)


@pytest.fixture(scope="module")
def calibrated(prepared_manifest, tmp_path_factory):
    """A copy of the demo checkpoint, calibrated by the CLI on the small test study."""
    from lmmeval.cli import main
    from lmmeval.model.factory import DEMO_CHECKPOINT

    ckpt = tmp_path_factory.mktemp("ood") / "ckpt"
    shutil.copytree(DEMO_CHECKPOINT, ckpt)
    (ckpt / OOD_NAME).unlink(missing_ok=True)
    assert main(["calibrate-ood", "--model", str(ckpt), "--manifest", str(prepared_manifest), "--components", "2",
                 "--folds", "3", "--device", "cpu", "-q"]) == 0
    return ckpt


def test_checkpoint_carries_the_statistics_through_load_and_save(calibrated, tmp_path):
    from lmmeval.inference.assessor import Assessor

    dist = FeatureDistribution.load(calibrated)
    assert dist.axes.shape == (2, dist.dim) and "calibrate-ood" in dist.fitted_on
    assessor = Assessor.from_pretrained(calibrated, device="cpu")
    assert assessor.parts.ood.threshold == dist.threshold
    assessor.save_pretrained(tmp_path / "copy")
    np.testing.assert_array_equal(FeatureDistribution.load(tmp_path / "copy").mean, dist.mean)
    # A model loaded to train carries none: training moves the features they describe.
    from lmmeval.model.factory import load_model

    assert load_model(calibrated, device="cpu", trainable=True).ood is None


def test_a_mismatched_file_is_refused(calibrated, tmp_path):
    from lmmeval.model.factory import load_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(calibrated, ckpt)
    x, _ = _gaussian(60, 5)
    FeatureDistribution.fit(x, components=2).save(ckpt)
    with pytest.raises(ValueError, match="5-wide features"):
        load_model(ckpt, device="cpu")


def test_score_rows_flag_a_real_photograph_and_not_the_training_videos(calibrated, prepared_manifest, tmp_path,
                                                                        capsys):
    from lmmeval.cli import main

    videos = sorted((Path(prepared_manifest).parent / "videos").glob("*.mp4"))[:4]
    out = tmp_path / "r.jsonl"
    assert main(["score", str(PHOTO), *map(str, videos), "--model", str(calibrated), "--out", str(out),
                 "--device", "cpu", "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["out_of_distribution"] is True and rows[0]["ood_score"] > 5
    assert all(r["out_of_distribution"] is False and r["ood_score"] < 3 for r in rows[1:])
    assert "1 out of distribution" in capsys.readouterr().out


def test_without_statistics_the_fields_are_none(tmp_path):
    from lmmeval.inference.assessor import Assessor
    from lmmeval.model.factory import DEMO_CHECKPOINT

    ckpt = tmp_path / "ckpt"
    shutil.copytree(DEMO_CHECKPOINT, ckpt)
    (ckpt / OOD_NAME).unlink(missing_ok=True)
    row = Assessor.from_pretrained(ckpt, device="cpu").assess(str(PHOTO), saliency=False, distortions=False).to_dict()
    assert row["ood_score"] is None and row["out_of_distribution"] is None


def test_the_demo_checkpoint_flags_a_real_photograph_however_degraded(tmp_path):
    """The embedded checkpoint's statistics (fitted on its training study): a real photograph, clean,
    blurred, noisy, over-exposed or pixelated, is flagged; unseen synthetic renders of its training
    protocol are not."""
    from research.trust import photo_variants
    from lmmeval.inference.assessor import Assessor

    assessor = Assessor.from_pretrained(device="cpu")
    assert assessor.parts.ood is not None
    photos = assessor.assess(list(photo_variants(PHOTO).values()), saliency=False, distortions=False)
    assert all(r.out_of_distribution for r in photos), [r.ood_score for r in photos]
    from lmmeval.synth import SynthConfig, synthesize

    unseen = synthesize(tmp_path / "raw", SynthConfig(n=10, seed=2, size=112, fps=8, seconds=2.0), progress=False)
    videos = sorted((unseen / "videos").glob("*.mp4"))  # seed 2: the demo checkpoint's test seed
    renders = assessor.assess([str(v) for v in videos], saliency=False, distortions=False)
    assert sum(r.out_of_distribution for r in renders) <= 1, [r.ood_score for r in renders]


def test_calibration_refuses_bad_settings_before_loading_anything(tmp_path):
    """A bad quantile is named at once, not after every training video's feature was computed
    (the manifest and the checkpoint here do not even exist)."""
    from lmmeval.inference.ood_calibration import calibrate_checkpoint

    with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\), got 1.5"):
        calibrate_checkpoint(tmp_path / "no_checkpoint", [tmp_path / "missing.jsonl"], quantile=1.5)


def test_calibration_keeps_an_existing_fit_unless_asked_before_computing_any_feature(prepared_manifest, tmp_path,
                                                                                    monkeypatch):
    """An existing ood.safetensors is refused before the checkpoint loads or any feature is computed
    (minutes on real data); with overwrite the run goes on to compute features."""
    from lmmeval.inference.assessor import Assessor
    from lmmeval.inference.ood_calibration import calibrate_checkpoint
    from lmmeval.model.factory import DEMO_CHECKPOINT

    class FeaturesComputed(Exception):
        pass

    def features(*args, **kwargs):
        raise FeaturesComputed()

    monkeypatch.setattr(Assessor, "features", features)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(DEMO_CHECKPOINT, ckpt)
    before = (ckpt / OOD_NAME).read_bytes()
    with pytest.raises(ValueError, match=rf"{OOD_NAME} exists \(an earlier calibration\): refusing to replace it; "
                                         r"pass --overwrite"):
        calibrate_checkpoint(ckpt, [prepared_manifest], device="cpu", progress=False)
    with pytest.raises(FeaturesComputed):
        calibrate_checkpoint(ckpt, [prepared_manifest], device="cpu", progress=False, overwrite=True)
    assert (ckpt / OOD_NAME).read_bytes() == before


def _write_raw(folder: Path, dist: FeatureDistribution, **change) -> None:
    """``dist`` written as ``save`` writes it, with ``change`` (tensors or metadata numbers) applied
    behind ``save``'s back: what a corrupted or hand-made file holds."""
    from safetensors.numpy import save_file

    tensors = {"mean": dist.mean, "axes": dist.axes, "variances": dist.variances}
    meta = {"feature": dist.feature, "rest_variance": dist.rest_variance, "threshold": dist.threshold,
            "quantile": dist.quantile, "n_fit": dist.n_fit, "fitted_on": dist.fitted_on}
    tensors |= {k: v for k, v in change.items() if k in tensors}
    meta |= {k: v for k, v in change.items() if k in meta}
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, folder / OOD_NAME,
              metadata={"lmmeval_ood": json.dumps(meta)})  # json writes NaN and Infinity as such


@pytest.mark.parametrize("change, message", [
    ({"variances": np.zeros(2)}, r"tensor 'variances' must be > 0 \(a zero variance makes every score infinite\)"),
    ({"mean": np.array([np.nan, 0, 0, 0])}, r"tensor 'mean' is not finite"),
    ({"axes": np.full((2, 4), np.inf)}, r"tensor 'axes' is not finite"),
    ({"threshold": float("nan")}, r"threshold must be a finite number >= 0, got nan"),
    ({"rest_variance": float("inf")}, r"rest_variance must be a finite number >= 0, got inf"),
    ({"quantile": 1.5}, r"quantile must be in \(0, 1\)"),
])
def test_statistics_that_cannot_give_a_finite_score_are_refused(tmp_path, change, message):
    """A zero variance made every score Infinity (not JSON); a NaN anywhere made them NaN. Refused
    when read, naming the file and what is wrong; and never written."""
    x, _ = _gaussian(60, 4)
    dist = FeatureDistribution.fit(x, components=2)
    _write_raw(tmp_path, dist, **change)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / OOD_NAME)) + ": " + message):
        FeatureDistribution.load(tmp_path)
    broken = FeatureDistribution(**{**dist.__dict__, **change})
    (tmp_path / "fresh").mkdir()
    with pytest.raises(ValueError, match=r"\(not written\): " + message):
        broken.save(tmp_path / "fresh")
    assert not (tmp_path / "fresh" / OOD_NAME).exists()
