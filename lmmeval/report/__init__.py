"""`lmmeval report`: a leaderboard of groups (generators, checkpoints) from `lmmeval score` results,
with bootstrap confidence intervals, Holm-corrected pairwise tests, agreement with human MOS,
distortion profiles, plots and a self-contained HTML page.

    from lmmeval.report import leaderboard, write_report
    board = leaderboard(rows, groups)          # typed tables (dataclasses), no files
    write_report("report", ["results.jsonl"], manifest="prepared/manifest.jsonl")

Nothing here is imported by ``import lmmeval`` or by the inference API; the names below load their
modules when first used, so that the command line's parser stays quick to build.
"""

from __future__ import annotations

import importlib

_LAZY = {
    # No submodule shares a public name: importing a submodule sets it as the package's attribute,
    # which `from lmmeval.report import leaderboard` would then return instead of the function.
    "leaderboard": "ranking", "Leaderboard": "ranking", "GroupEntry": "ranking",
    "DimensionScore": "ranking", "Comparison": "ranking",
    "RankAgreement": "agreement", "Correlation": "agreement", "rank_agreement": "agreement",
    "input_correlations": "agreement", "distortion_profile": "agreement",
    "build_report": "build", "Report": "build", "load_results": "inputs",
    "write_report": "write",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lmmeval.report' has no attribute {name!r}")


__all__ = sorted(_LAZY)
