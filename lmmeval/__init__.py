"""lmmeval: an LMM-based assessor for AI-generated 3D human faces (LMME3DHF).

The public names below are stable; everything else is an implementation detail.
"""

from .annotations import compute_mos, description_to_categories, points_to_saliency_map
from .labels import DIMENSIONS, DISTORTIONS, LEVELS, score_to_level
from .metrics import auc_borji, auc_judd, cc, correlations, kld, krcc, nss, plcc, sim, srcc
from .prepare import PrepareConfig, load_manifest, prepare
from .synth import SynthConfig, synthesize

__version__ = "0.1.0"


def __getattr__(name: str):
    # The model side imports torch and transformers: load it only when asked for,
    # so that data preparation and metrics stay quick to import.
    if name in ("Assessor", "Assessment"):
        from . import assessor

        return getattr(assessor, name)
    raise AttributeError(f"module 'lmmeval' has no attribute {name!r}")


__all__ = [
    "Assessment",
    "Assessor",
    "DIMENSIONS",
    "DISTORTIONS",
    "LEVELS",
    "PrepareConfig",
    "SynthConfig",
    "auc_borji",
    "auc_judd",
    "cc",
    "compute_mos",
    "correlations",
    "description_to_categories",
    "kld",
    "krcc",
    "load_manifest",
    "nss",
    "plcc",
    "points_to_saliency_map",
    "prepare",
    "score_to_level",
    "sim",
    "srcc",
    "synthesize",
]
