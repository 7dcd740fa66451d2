"""What `lmmeval score` writes besides its JSON lines: heat maps, overlays, refinement masks, a CSV.

Heat maps use a built-in perceptual colour map, so no plotting library is needed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..labels import DIMENSIONS, LEVELS
from .assessor import Assessment

# Anchor colours of a perceptual "inferno"-like map, for heat maps without matplotlib.
_HEAT = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21),
                  (250, 193, 39), (252, 255, 164)], dtype=np.float32)


def heatmap_rgb(saliency: np.ndarray) -> np.ndarray:
    """[H, W] values in [0, 1] -> uint8 RGB through the heat colour map."""
    x = np.clip(saliency, 0, 1) * (len(_HEAT) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(_HEAT) - 1)
    frac = (x - lo)[..., None]
    return (_HEAT[lo] * (1 - frac) + _HEAT[hi] * frac).astype(np.uint8)


def write_saliency_png(path: Path, result: Assessment) -> None:
    """One PNG per input: the temporal maximum of the maps (every distortion seen at any time)."""
    from PIL import Image

    smap = result.saliency if result.saliency.ndim == 2 else result.saliency.max(axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(heatmap_rgb(smap)).save(path)


def write_overlay(path: Path, result: Assessment, strength: float = 0.8) -> Path:
    """Heat map over the frames the assessor saw, at their own size (``result.frames``: assessed with
    ``keep_frames=True``), blended by saliency so that unmarked regions keep their colours: an
    animated GIF for videos, a PNG for images."""
    from PIL import Image

    if result.frames is None:
        raise ValueError(f"{result.source}: no frames kept for an overlay (assess with keep_frames=True)")
    maps = result.saliency if result.saliency.ndim == 3 else result.saliency[None]
    if len(result.frames) != len(maps):
        raise ValueError(f"{result.source}: {len(maps)} saliency maps for {len(result.frames)} sampled frames")
    out = []
    for frame, smap in zip(result.frames, maps):
        size = frame.shape[1::-1]
        heat = np.asarray(Image.fromarray(heatmap_rgb(smap)).resize(size, Image.BILINEAR)).astype(np.float32)
        weight = strength * np.asarray(Image.fromarray(smap.astype(np.float32)).resize(size, Image.BILINEAR))[..., None]
        out.append(Image.fromarray((frame * (1 - weight) + heat * weight).astype(np.uint8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(out) == 1:
        path = path.with_name(path.name + ".png")
        out[0].save(path)
    else:
        path = path.with_name(path.name + ".gif")
        out[0].save(path, save_all=True, append_images=out[1:], duration=250, loop=0)
    return path


def write_masks(stem: Path, result: Assessment, threshold: float, dilate: int) -> tuple[Path, float]:
    """Binary refinement masks as 8-bit PNGs (255 = refine): ``<stem>.mask.png`` for an image, a
    ``<stem>.mask/`` folder with one PNG per sampled frame (named by source frame) for a video."""
    from PIL import Image

    target = result.refine_mask(threshold, dilate)
    if target.mask.ndim == 2:
        path = stem.with_name(stem.name + ".mask.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(target.mask.astype(np.uint8) * 255).save(path)
        return path, target.strength
    folder = stem.with_name(stem.name + ".mask")
    folder.mkdir(parents=True, exist_ok=True)
    for frame, mask in zip(result.frame_indices, target.mask):
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"frame_{frame:06d}.png")
    return folder, target.strength


# The leading columns of the CSV, in this order; every other scalar field of a row follows (nested
# fields flattened as ``level_probs.quality.bad`` -> ``p_quality_bad`` etc., lists joined by "; ").
CSV_LEADING = ["id", "path", "quality", "authenticity", "quality_level", "authenticity_level",
               "out_of_distribution", "ood_score", "low_confidence", "distortions", "error", "notes"]


def csv_row(row: dict) -> dict:
    """A result row flattened to one CSV row: every scalar field, nested ones named by their path."""
    flat = {}
    for key, value in row.items():
        if key == "level_probs":
            for dim, probs in (value or {}).items():
                for lvl, p in probs.items():
                    flat[f"p_{dim}_{lvl}"] = p
        elif isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, dict):
                    for leaf, x in v.items():
                        flat[f"{key}_{sub}_{leaf}"] = x
                else:
                    flat[f"{key}_{sub}"] = v
        elif isinstance(value, list):
            flat[key] = "; ".join(map(str, value))
        else:
            flat[key] = value
    return flat


def write_csv(jsonl: Path, csv_path: Path, paths: set[str] | None = None) -> None:
    """A flat CSV view of a results file (one row per input; only the rows of ``paths`` when given),
    written to a temporary name and renamed, so it is never half written. Every scalar field of a
    row is a column, the out-of-distribution flag and the notes included: a reader of the CSV sees
    every warning the JSON lines carry. Probability columns are named p_<dimension>_<level>."""
    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    flat = [csv_row(r) for r in rows if paths is None or r.get("path") in paths]
    probs = [f"p_{dim}_{lvl}" for dim in DIMENSIONS for lvl in LEVELS]
    fields = CSV_LEADING + probs
    for r in flat:
        fields += [k for k in r if k not in fields]
    csv_path = Path(csv_path)
    tmp = csv_path.with_name(csv_path.name + ".partial")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    tmp.replace(csv_path)
