"""Dataset statistics and the learnability check of a prepared manifest.

The synthetic benchmark is only useful if its labels follow what is visible in
the videos. The cheapest evidence: a hand-made sharpness statistic (variance of
the Laplacian, a classic no-reference blur measure) already correlates with the
quality MOS; and, on synthetic data, the MOS computed from the simulated raters
reproduces the simulator's latent scores.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import DIMENSIONS, DISTORTIONS
from .manifest import Record, load_manifest


def sharpness(frames: np.ndarray) -> float:
    """Mean variance of the Laplacian of the grey frames (higher = sharper). frames: (T, H, W, 3) uint8."""
    from scipy.ndimage import laplace

    grey = frames.astype(np.float32).mean(axis=-1) / 255.0  # (t, h, w)
    return float(np.mean([laplace(g).var() for g in grey]))


def model_view(frames: np.ndarray, input_size: int) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 as a Qwen2.5-VL with a per-frame budget of ``input_size`` x
    ``input_size`` pixels reads them: resized by the model's own loader rule (``resize_frames``; sides
    multiples of the merged patch, aspect kept, bicubic)."""
    from ..io.media import resize_frames

    return resize_frames(frames, *_budget(input_size))


def _budget(input_size: int):
    """(SamplingConfig, PatchGeometry) of a Qwen2.5-VL reading frames within input_size x input_size pixels."""
    from ..model.configuration import SamplingConfig
    from ..model.presets import geometry

    patches = geometry("tiny")  # Qwen2.5-VL's patch geometry, the 7B's too
    if input_size < patches.factor:
        raise ValueError(f"input_size must be at least {patches.factor} pixels (one merged patch), got {input_size}")
    budget = input_size * input_size
    return SamplingConfig(max_pixels=budget, min_pixels=min(SamplingConfig.min_pixels, budget)), patches


@dataclass(frozen=True)
class Learnability:
    """``learnability``'s result."""
    checks: dict[str, float]                  # {"srcc_sharpness_quality": ..., "srcc_mos_latent_quality": ...}
    sharpness_by_generator: dict[str, float]  # the sharpness statistic's mean per generator


def learnability(records: list[Record], frames_per_video: int = 4, truth_path: str | Path | None = None,
                 input_size: int | None = None) -> Learnability:
    """SRCC of the sharpness statistic with each MOS, and of MOS with the latent truth if given
    (``checks``), and the statistic's mean per generator. ``input_size``: measure sharpness on the
    frames as a model with that pixel budget reads them (``model_view``)."""
    from ..eval.metrics import srcc
    from ..io.media import read_video, video_info

    if input_size is not None:
        _budget(input_size)  # a bad size fails before any decoding
    values = []
    for r in records:
        frames = r.num_frames or video_info(r.video_path)["num_frames"]
        idx = np.linspace(0, frames - 1, frames_per_video).round().astype(int).tolist()
        decoded = read_video(r.video_path, idx)[0]
        values.append(sharpness(model_view(decoded, input_size) if input_size else decoded))
    checks = {f"srcc_sharpness_{dim}": srcc(values, [r.mos[dim] for r in records]) for dim in DIMENSIONS}
    gens = sorted({r.generator for r in records if r.generator is not None})
    by_generator = {g: float(np.mean([v for v, r in zip(values, records) if r.generator == g])) for g in gens}
    if truth_path is not None:
        latent = {}
        with open(truth_path) as f:
            for line in f:
                t = json.loads(line)
                latent[t["video"]] = t["latent"]
        for dim in DIMENSIONS:
            checks[f"srcc_mos_latent_{dim}"] = srcc([r.mos[dim] for r in records], [latent[r.id][dim] for r in records])
    return Learnability(checks, by_generator)


def summarize(records: list[Record]) -> dict:
    """Dataset statistics: counts, MOS distribution, per-generator means, levels, categories."""
    out: dict = {"videos": len(records), "folds": dict(sorted(Counter(r.fold for r in records).items()))}
    for dim in DIMENSIONS:
        values = np.array([r.mos[dim] for r in records])
        out[f"mos_{dim}"] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                             "max": float(values.max())}
        out[f"levels_{dim}"] = {lvl: n for lvl, n in Counter(r.level[dim] for r in records).most_common()}
    gens = sorted({r.generator for r in records if r.generator is not None})
    out["generators"] = {
        g: {dim: float(np.mean([r.mos[dim] for r in records if r.generator == g])) for dim in DIMENSIONS}
        | {"videos": sum(r.generator == g for r in records)}
        for g in gens
    }
    counts = Counter(c for r in records if r.labelled for c in r.categories)
    out["categories"] = {c: counts.get(c, 0) for c in DISTORTIONS}
    out["categories_not_labelled"] = sum(not r.labelled for r in records)
    splits = Counter(r.split for r in records if r.split is not None)
    if splits:
        out["splits"] = dict(sorted(splits.items()))
    return out


def format_report(summary: dict, learnt: Learnability | None = None) -> str:
    """A plain-text report of ``summarize`` output (and the learnability checks) for the terminal."""
    lines = [f"videos: {summary['videos']}   folds: {summary['folds']}"]
    for dim in DIMENSIONS:
        m = summary[f"mos_{dim}"]
        levels = ", ".join(f"{k} {v}" for k, v in summary[f"levels_{dim}"].items())
        lines.append(f"MOS {dim:<12} mean {m['mean']:5.1f}  std {m['std']:4.1f}  range [{m['min']:.1f}, {m['max']:.1f}]   levels: {levels}")
    lines.append("")
    checks = learnt.checks if learnt else {}
    sharp = learnt.sharpness_by_generator if learnt else {}  # (x 1e4 below: a [0, 1] image's Laplacian varies little)
    lines.append(f"{'generator':<26}{'videos':>7}{'quality':>9}{'authent.':>10}" + (f"{'sharpness':>11}" if sharp else ""))
    for g, v in summary["generators"].items():
        lines.append(f"{g:<26}{v['videos']:>7}{v['quality']:>9.1f}{v['authenticity']:>10.1f}"
                     + (f"{1e4 * sharp[g]:>11.1f}" if g in sharp else ""))
    if sharp:
        lines.append("(sharpness: mean variance of the Laplacian x 1e4, the statistic of the learnability checks)")
    lines.append("")
    lines.append("distortion categories (videos):" + (f" {summary['categories_not_labelled']} not labelled"
                                                       if summary.get("categories_not_labelled") else ""))
    for c, n in summary["categories"].items():
        lines.append(f"  {c:<36}{n:>5}")
    if summary.get("rejected_subjects"):
        lines.append(f"subjects rejected by BT.500 screening: {summary['rejected_subjects']}")
    if checks:
        lines.append("")
        lines.append("learnability checks (Spearman):")
        for k, v in checks.items():
            lines.append(f"  {k:<32}{v:+.3f}")
    return "\n".join(lines)


def dataset_report(manifest: str | Path, truth_path: str | Path | None = None, check: bool = True,
                   input_size: int | None = None) -> str:
    records = load_manifest(manifest)
    summary_path = Path(manifest).parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else summarize(records)
    learnt = learnability(records, truth_path=truth_path, input_size=input_size) if check else None
    report = format_report(summary, learnt)
    if learnt and input_size:
        report += f"\n(sharpness measured on frames as a model with a {input_size} x {input_size} pixel budget reads them)"
    return report
