"""The embedded demo checkpoint gives exactly the outputs it gave when this file's reference was made.

A fixed set of inputs (two rendered synthetic heads, a snapshot image, a seeded in-memory video)
is assessed in one batch, with the free-text description; scores, level probabilities, levels,
categories, the description and every saliency map (by SHA-256 of its float32 bytes) must be
bit-identical to ``tests/data/demo_golden/reference.json``. Refactors of the inference path are
held to it. Rebuilding the demo checkpoint on purpose changes the outputs: then regenerate the
reference with

    python tests/test_demo_golden.py --write

and say so in the commit.
"""

from __future__ import annotations

import hashlib
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
            "saliency_shape": list(saliency.shape), "saliency_mean": float(saliency.mean()),
            "saliency_sha256": hashlib.sha256(saliency.tobytes()).hexdigest(),
        })
    return out


def test_demo_checkpoint_outputs_are_bit_identical_to_the_reference():
    expected = json.loads(REFERENCE.read_text())
    got = json.loads(json.dumps(demo_outputs()))  # the same float -> text -> float round trip as the file
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        # Field by field, so a failure says which output moved and by how much.
        for key in e:
            assert g[key] == e[key], f"input {i}, {key}: {g[key]!r} != reference {e[key]!r}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(__doc__)
    REFERENCE.write_text(json.dumps(demo_outputs(), indent=1) + "\n")
    print(f"wrote {REFERENCE}")
