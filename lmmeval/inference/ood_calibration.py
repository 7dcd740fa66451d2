"""`lmmeval calibrate-ood`: fit a checkpoint's out-of-distribution statistics on its training videos.

The checkpoint is loaded, every training record's feature computed (``Assessor.features``), the
distribution fitted and its threshold calibrated on held-out folds of those same records
(``lmmeval.model.ood``), and ``ood.safetensors`` written into the checkpoint folder. From then on
every ``Assessment`` (and row of `lmmeval score`) carries ``ood_score`` and ``out_of_distribution``.

Run it after the last training stage, on the manifests the checkpoint was trained on, leaving out
what training left out (``held_out_fold`` / ``held_out_split``). A checkpoint that already has
``ood.safetensors`` keeps it unless ``overwrite`` (checked before any feature is computed); the new
file replaces it atomically (written to a temporary name, then renamed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.manifest import held_out, load_manifest
from ..model.ood import OOD_NAME, FeatureDistribution


def training_videos(manifests: list[str | Path], held_out_fold: int = -1,
                    held_out_split: str | None = None) -> list[Path]:
    """The videos of ``manifests`` that training saw (a held-out fold or split left out)."""
    videos = []
    for manifest in manifests:
        records = load_manifest(manifest)
        out = held_out(records, manifest, held_out_fold, held_out_split)
        videos += [r.video_path for r, skip in zip(records, out) if not skip]
    if not videos:
        raise ValueError(f"no training videos in {', '.join(map(str, manifests))} once the held-out ones are left out")
    return videos


def calibrate_checkpoint(model_dir: str | Path, manifests: list[str | Path], held_out_fold: int = -1,
                         held_out_split: str | None = None, components: int = 32, quantile: float = 0.99,
                         folds: int = 5, batch_size: int = 4, device=None, base=None, workers: int = 0,
                         progress: bool = True, command: str = "",
                         overwrite: bool = False) -> tuple[FeatureDistribution, np.ndarray]:
    """Fit, calibrate and save; returns the distribution and the training videos' scores under it.
    An existing ``ood.safetensors`` is replaced only with ``overwrite``."""
    from .assessor import Assessor

    FeatureDistribution.check_settings(components, quantile, folds)  # before minutes of feature extraction
    model_dir = Path(model_dir)
    if (model_dir / OOD_NAME).exists() and not overwrite:
        raise ValueError(f"{model_dir / OOD_NAME} exists (an earlier calibration): refusing to replace it; pass "
                         "--overwrite (overwrite=True) to fit it again")
    videos = training_videos(manifests, held_out_fold, held_out_split)
    assessor = Assessor.from_pretrained(model_dir, device=device, base=base)
    features = assessor.features(videos, batch_size=batch_size, workers=workers, progress=progress)
    ood = FeatureDistribution.fit(features, components=components, quantile=quantile, folds=folds)
    ood.fitted_on = command or f"{len(videos)} videos of {', '.join(map(str, manifests))}"
    ood.save(model_dir)
    return ood, ood.score(features)
