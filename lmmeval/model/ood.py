"""Is this input like the ones the checkpoint was trained on? A density model of the vision features.

The feature is the mean of an input's merged vision tokens (what the vision tower hands the language
model, ``LMME3DHFOutput.video_features``): one (d,) vector per input, computed in every forward pass
anyway. Its distribution over the training videos is summarised by a Gaussian with a low-rank
covariance (probabilistic PCA): the mean, the ``k`` leading principal axes with their variances, and
one variance for everything outside them. An input's ``ood_score`` is its squared Mahalanobis
distance under that Gaussian divided by d, so it is about 1 for a typical training input:

    z = x - mean
    score = ( sum_i (z . axis_i)^2 / var_i  +  |z - projection of z on the axes|^2 / var_rest ) / d

The threshold is calibrated without a separate set: the training features are split into folds, each
fold scored by the model fitted on the others, and the threshold is the ``quantile`` (default 0.99)
of those held-out scores; the saved model is then fitted on all of them. An input above it is
``out_of_distribution``.

What the flag says: the vision tower sees something unlike every training input (another kind of
picture, another render protocol, a real photograph). What it does not say: that a flagged input's
scores are wrong, or that an unflagged input's are right; quality inside the training distribution
is the regression head's job.

Saved with the checkpoint as ``ood.safetensors`` (``lmmeval calibrate-ood`` writes it). A file whose
statistics cannot give a finite score (a NaN mean, a variance of zero, a NaN threshold) is refused when
it is written and when it is read: a result's ``ood_score`` is always a finite number or None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

OOD_NAME = "ood.safetensors"
FEATURE = "vision_token_mean"  # the only feature so far; stored so a later one cannot be mistaken for it


def vision_token_mean(video_features) -> torch.Tensor:
    """Per input (tokens, d) merged vision tokens -> (B, d) float32 means."""
    return torch.stack([tokens.float().mean(0) for tokens in video_features])


@dataclass
class FeatureDistribution:
    """A Gaussian with low-rank covariance over training features, and the flagging threshold."""

    mean: np.ndarray  # (d,)
    axes: np.ndarray  # (k, d) orthonormal principal axes
    variances: np.ndarray  # (k,) variance along each axis
    rest_variance: float  # variance per dimension outside the axes
    threshold: float  # scores above it are flagged
    quantile: float  # the held-out quantile the threshold is
    n_fit: int  # training inputs it was fitted on
    feature: str = FEATURE
    fitted_on: str = ""  # what the inputs were (manifests, command), for the record

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, features: np.ndarray, components: int = 32, quantile: float = 0.99, folds: int = 5,
            seed: int = 0) -> FeatureDistribution:
        """Fit on (n, d) training features; calibrate the threshold on held-out folds (see module docstring)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or not np.isfinite(x).all():
            raise ValueError(f"features must be a finite (n, d) array, got shape {x.shape}")
        cls.check_settings(components, quantile, folds)
        n, d = x.shape
        k = min(components, d)
        if n < folds * (k + 2):
            raise ValueError(f"{n} inputs are too few to fit {components} components with {folds} folds "
                             f"(need at least {folds * (k + 2)}; pass fewer components)")
        fold = np.random.default_rng(seed).permutation(n) % folds
        held_out = np.empty(n)
        for j in range(folds):
            held_out[fold == j] = _fit(x[fold != j], k).score(x[fold == j])
        full = _fit(x, k)
        full.threshold, full.quantile = float(np.quantile(held_out, quantile)), quantile
        return full

    @staticmethod
    def check_settings(components: int, quantile: float, folds: int) -> None:
        """``ValueError`` for settings ``fit`` cannot use (callers check before computing features)."""
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")

    # ------------------------------------------------------------------ scoring
    def score(self, features) -> np.ndarray:
        """(n, d) features -> (n,) scores (about 1 for a typical training input)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (n, {self.dim}), got shape {x.shape}")
        z = x - self.mean  # (n, d)
        along = z @ self.axes.T  # (n, k)
        rest = np.maximum((z * z).sum(1) - (along * along).sum(1), 0.0)  # squared norm off the axes
        rest_term = rest / self.rest_variance if self.rest_variance > 0 else 0.0
        return ((along * along / self.variances).sum(1) + rest_term) / self.dim

    def flag(self, features) -> tuple[np.ndarray, np.ndarray]:
        """(scores, out_of_distribution booleans)."""
        scores = self.score(features)
        return scores, scores > self.threshold

    # ------------------------------------------------------------------ storage
    def save(self, folder: str | Path) -> Path:
        """Write ``folder/ood.safetensors`` (written to a temporary name and renamed: never half a file)."""
        from safetensors.numpy import save_file

        path = Path(folder) / OOD_NAME
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32)
                   for k, v in {"mean": self.mean, "axes": self.axes, "variances": self.variances}.items()}
        self.check(f"{path} (not written)", tensors)  # as stored: a float32 variance may round to zero
        tmp = path.with_name(path.name + ".tmp")
        meta = {"feature": self.feature, "rest_variance": self.rest_variance, "threshold": self.threshold,
                "quantile": self.quantile, "n_fit": self.n_fit, "fitted_on": self.fitted_on}
        save_file(tensors, tmp, metadata={"lmmeval_ood": json.dumps(meta, allow_nan=False)})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> FeatureDistribution | None:
        """The checkpoint's distribution, or None if it has none (``lmmeval calibrate-ood`` was not run)."""
        from safetensors import SafetensorError, safe_open

        path = Path(folder) / OOD_NAME
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads(f.metadata()["lmmeval_ood"])
                tensors = {k: f.get_tensor(k).astype(np.float64) for k in ("mean", "axes", "variances")}
            dist = cls(rest_variance=float(meta["rest_variance"]), threshold=float(meta["threshold"]),
                       quantile=float(meta["quantile"]), n_fit=int(meta["n_fit"]), feature=meta["feature"],
                       fitted_on=str(meta.get("fitted_on", "")), **tensors)
        except (KeyError, TypeError, ValueError, OSError, SafetensorError) as err:
            raise ValueError(f"{path}: not an lmmeval out-of-distribution file ({err}); "
                             "rewrite it with `lmmeval calibrate-ood`") from err
        if dist.feature != FEATURE:
            raise ValueError(f"{path}: feature {dist.feature!r} is not {FEATURE!r}, the one this version computes")
        dist.check(str(path), tensors)
        return dist

    def check(self, where: str, tensors: dict[str, np.ndarray]) -> None:
        """``ValueError`` naming ``where`` unless ``tensors`` (mean, axes, variances) and the numbers
        beside them make every score finite: consistent shapes, finite values, variances > 0."""
        mean, axes, variances = tensors["mean"], tensors["axes"], tensors["variances"]
        if axes.ndim != 2 or variances.shape != (axes.shape[0],) or mean.shape != (axes.shape[1],):
            raise ValueError(f"{where}: inconsistent shapes: mean {mean.shape}, axes {axes.shape}, "
                             f"variances {variances.shape}")
        for name, tensor in tensors.items():
            if not np.isfinite(tensor).all():
                raise ValueError(f"{where}: tensor {name!r} is not finite (NaN or inf values); rerun "
                                 "`lmmeval calibrate-ood`")
        if not (variances > 0).all():
            raise ValueError(f"{where}: tensor 'variances' must be > 0 (a zero variance makes every score "
                             f"infinite), smallest {float(variances.min())}; rerun `lmmeval calibrate-ood`")
        numbers = {"rest_variance": self.rest_variance, "threshold": self.threshold}
        for name, value in numbers.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value}; rerun "
                                 "`lmmeval calibrate-ood`")
        if not 0 < self.quantile < 1 or self.n_fit < 1:
            raise ValueError(f"{where}: quantile must be in (0, 1) and n_fit >= 1, got {self.quantile}, "
                             f"{self.n_fit}; rerun `lmmeval calibrate-ood`")


def _fit(x: np.ndarray, k: int) -> FeatureDistribution:
    """The low-rank Gaussian of (n, d) features (threshold not yet calibrated)."""
    n, d = x.shape
    mean = x.mean(0)
    z = x - mean
    _, singular, vt = np.linalg.svd(z, full_matrices=False)
    variances = singular[:k] ** 2 / (n - 1)
    # A floor keeps a direction with (nearly) no spread from making every tiny deviation infinite.
    variances = np.maximum(variances, 1e-6 * max(variances.sum(), 1e-12))
    rest = (singular[k:] ** 2).sum() / (n - 1) / (d - k) if d > k else 0.0
    return FeatureDistribution(mean=mean, axes=vt[:k], variances=variances, rest_variance=float(rest),
                               threshold=float("inf"), quantile=float("nan"), n_fit=n)
