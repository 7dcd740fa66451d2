"""`lmmeval calibrate-ood`: fit a checkpoint's out-of-distribution statistics on its training videos.

The checkpoint is loaded, every training record's feature computed (``Assessor.features``), the
distribution fitted and its threshold calibrated on held-out folds of those same records
(``lmmeval.model.ood``), and ``ood.safetensors`` written into the checkpoint folder. From then on
every ``Assessment`` (and row of `lmmeval score`) carries ``ood_score`` and ``out_of_distribution``.

Run it after the last training stage, on the manifests the checkpoint was trained on, leaving out
what training left out (``held_out_fold`` / ``held_out_split``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.manifest import held_out, load_manifest
from ..model.ood import FeatureDistribution


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
                         progress: bool = True, command: str = "") -> tuple[FeatureDistribution, np.ndarray]:
    """Fit, calibrate and save; returns the distribution and the training videos' scores under it."""
    from .assessor import Assessor

    FeatureDistribution.check_settings(components, quantile, folds)  # before minutes of feature extraction
    model_dir = Path(model_dir)
    videos = training_videos(manifests, held_out_fold, held_out_split)
    assessor = Assessor.from_pretrained(model_dir, device=device, base=base)
    features = assessor.features(videos, batch_size=batch_size, workers=workers, progress=progress)
    ood = FeatureDistribution.fit(features, components=components, quantile=quantile, folds=folds)
    ood.fitted_on = command or f"{len(videos)} videos of {', '.join(map(str, manifests))}"
    ood.save(model_dir)
    return ood, ood.score(features)
