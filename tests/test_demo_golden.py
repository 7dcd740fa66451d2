"""The embedded demo checkpoint gives the outputs it gave when this file's reference was made.

A fixed set of inputs (two rendered synthetic heads, a snapshot image, a seeded in-memory video)
is assessed in one batch, with the free-text description. Levels, categories, the description,
frame indices and notes must equal ``tests/data/demo_golden/reference.json``; scores, level
probabilities and every saliency map (pooled to 8 x 8 cells per frame) must agree within the
tolerances below. Not bit for bit: CPU kernels differ between processors (an AMD and an Intel
machine give scores 1e-5 apart with the same wheels), while any real change to the inference path
moves these numbers by orders of magnitude more (bilinear instead of bicubic resizing of the
in-memory video moves its quality by 0.06 and a pooled saliency cell by 8e-3).
Refactors of the inference path are held to it. Rebuilding the demo checkpoint on purpose changes
the outputs: then regenerate the reference with

    python tests/test_demo_golden.py --write

and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "demo_golden"
REFERENCE = DATA / "reference.json"


def golden_inputs() -> list:
    rng = np.random.default_rng(7)
    # A smooth moving pattern: random pixels would be far from anything the model has seen.
    t, y, x = np.meshgrid(np.arange(6), np.arange(96), np.arange(128), indexing="ij")
    base = 127 + 100 * np.sin(x / 9.0 + t / 2.0)[..., None] * np.cos(y / 13.0)[..., None] * np.array([1.0, 0.6, 0.3])
    video = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)  # (6, 96, 128, 3)
    return [str(DATA / "g01_0000.mp4"), str(DATA / "g04_0000_0.png"), video, str(DATA / "g06_0000.mp4")]


# CPU kernels split their reductions by thread count (one thread gives other saliency bits than
# two): the reference and the test both run on this many, whatever the machine's core count.
THREADS = 2
# Tolerances: about 100x the differences seen between two processors, well below a real change.
SCORE_ATOL = 1e-3  # MOS points (0-100)
PROB_ATOL = 1e-4
SALIENCY_ATOL = 1e-4  # per pooled cell, maps in [0, 1]
POOL = 8  # cells per side of a saliency map's pooled summary


def pooled(maps: np.ndarray) -> list:
    """(T, H, W) or (H, W) saliency -> per frame, the mean over each of POOL x POOL cells."""
    maps = maps if maps.ndim == 3 else maps[None]
    t, h, w = maps.shape
    rows, cols = np.array_split(np.arange(h), POOL), np.array_split(np.arange(w), POOL)
    return [[[float(m[np.ix_(r, c)].mean()) for c in cols] for r in rows] for m in maps]


def demo_outputs() -> list[dict]:
    import torch

    from lmmeval import Assessor

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        assessor = Assessor.from_pretrained(device="cpu")
        results = assessor.assess(golden_inputs(), batch_size=4, describe=True)
    finally:
        torch.set_num_threads(threads)
    out = []
    for r in results:
        saliency = np.ascontiguousarray(r.saliency, dtype=np.float32)
        out.append({
            "quality": r.quality, "authenticity": r.authenticity,
            "quality_level": r.quality_level, "authenticity_level": r.authenticity_level,
            "level_probs": r.level_probs, "distortions": r.distortions, "description": r.description,
            "frame_indices": r.frame_indices, "notes": r.notes,
            "saliency_shape": list(saliency.shape), "saliency_pooled": pooled(saliency),
        })
    return out


def test_demo_checkpoint_outputs_match_the_reference():
    expected = json.loads(REFERENCE.read_text())
    got = json.loads(json.dumps(demo_outputs()))  # the same float -> text -> float round trip as the file
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        # Field by field, so a failure says which output moved and by how much.
        for key in ("quality", "authenticity"):
            assert abs(g[key] - e[key]) <= SCORE_ATOL, f"input {i}, {key}: {g[key]!r} != reference {e[key]!r}"
        for dim, probs in e["level_probs"].items():
            for level, p in probs.items():
                assert abs(g["level_probs"][dim][level] - p) <= PROB_ATOL, f"input {i}, p({dim} {level})"
        moved = np.abs(np.array(g["saliency_pooled"]) - np.array(e["saliency_pooled"])).max()
        assert moved <= SALIENCY_ATOL, f"input {i}: saliency moved by {moved:.2e} in a pooled cell"
        for key in ("quality_level", "authenticity_level", "distortions", "description", "frame_indices", "notes",
                    "saliency_shape"):
            assert g[key] == e[key], f"input {i}, {key}: {g[key]!r} != reference {e[key]!r}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    REFERENCE.write_text(json.dumps(demo_outputs(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
