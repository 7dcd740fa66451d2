"""lmmeval: an LMM-based assessor for AI-generated 3D human faces (LMME3DHF).

The public names below are stable; everything else is an implementation detail. Only the
label sets load with ``import lmmeval``; each other name loads its module when first used,
so the inference API does not pull in training, plotting or the synthetic renderer.
"""

from __future__ import annotations

import importlib

from .labels import DIMENSIONS, DISTORTIONS, LEVELS, SCORE_RANGE, score_to_level

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Assessor": "inference.assessor", "Assessment": "inference.assessor",
    "compute_mos": "data.mos", "points_to_saliency_map": "data.saliency_maps",
    "description_to_categories": "data.descriptions",
    "PrepareConfig": "data.prepare", "prepare": "data.prepare", "load_manifest": "data.manifest",
    **{name: "eval.metrics" for name in ("auc_borji", "auc_judd", "cc", "correlations", "kld", "krcc", "nss", "plcc",
                                         "sim", "srcc")},
    "SynthConfig": "synth", "synthesize": "synth",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lmmeval' has no attribute {name!r}")


__all__ = ["DIMENSIONS", "DISTORTIONS", "LEVELS", "SCORE_RANGE", "score_to_level", *sorted(_LAZY)]
