"""Training data order: the token estimate against the processor, and length-grouped batches."""

import numpy as np
import pytest

from lmmeval.media import load_visual
from lmmeval.model.config import SamplingConfig
from lmmeval.model.lmme import build_batch
from lmmeval.prepare import load_manifest
from lmmeval.training.data import GROUP_WINDOW, ManifestData, estimated_tokens


def test_estimate_matches_the_processor(prepared_manifest, tiny_assessor):
    """The estimate from the manifest alone equals the video tokens the processor makes."""
    records = load_manifest(prepared_manifest)[:3]
    for sampling in (SamplingConfig(fps=4.0, max_frames=8, max_pixels=112 * 112),
                     SamplingConfig(fps=2.0, max_frames=16, max_pixels=56 * 56, min_pixels=56 * 56)):
        for r in records:
            assert (r["width"], r["height"]) == (112, 112)
            batch = build_batch(tiny_assessor.processor, [load_visual(str(r["video_path"]), sampling)], ("quality",))
            tokens = int(batch.video_grid_thw[0].prod()) // 4  # 2x2 merge
            assert estimated_tokens(r, sampling) == tokens


def _records(n, seed=0):
    """Manifest-like records of mixed sizes and durations (only the fields the estimate reads)."""
    rng = np.random.default_rng(seed)
    sides = rng.choice([224, 336, 448], size=n)
    return [{"num_frames": int(f), "fps": 8.0, "width": int(s), "height": int(s)}
            for f, s in zip(rng.integers(9, 129, size=n), sides)]


def _padding(order, lengths, batch):
    """Padded token slots: per batch, (longest - each) summed, as left padding wastes them."""
    full = len(order) // batch * batch
    groups = lengths[order[:full]].reshape(-1, batch)
    return float((groups.max(1, keepdims=True) - groups).sum())


@pytest.mark.parametrize("world", [1, 2])
def test_length_grouping_cuts_padding_and_stays_a_seeded_permutation(world):
    records = _records(640)
    sampling = SamplingConfig(fps=2.0, max_frames=16, max_pixels=448 * 448)
    batch = 4
    plain = ManifestData(records, None, sampling, ("quality",), seed=3)
    grouped = ManifestData(records, None, sampling, ("quality",), seed=3, group_by_length=True,
                           global_batch=batch * world)
    lengths = np.array([estimated_tokens(r, sampling) for r in records])
    for epoch in range(2):
        order = grouped.order(epoch)
        assert sorted(order.tolist()) == list(range(len(records)))  # nothing dropped or repeated
        assert np.array_equal(order, grouped.order(epoch))  # a resume replays it
        # Each rank's micro-batch is a slice of the global batch: measure padding per micro-batch.
        assert _padding(order, lengths, batch) < 0.25 * _padding(plain.order(epoch), lengths, batch)
    assert not np.array_equal(grouped.order(0), grouped.order(1))
    # Batches are shuffled after sorting: the first window's lengths do not simply rise.
    first = lengths[grouped.order(0)[: batch * world * GROUP_WINDOW]]
    assert not np.all(np.diff(first) >= 0)


def test_without_grouping_the_order_is_unchanged():
    """The default order is the plain seeded permutation that existing runs resume into."""
    records = _records(50)
    data = ManifestData(records, None, SamplingConfig(), ("quality",), seed=7)
    assert np.array_equal(data.order(2), np.random.default_rng([7, 2]).permutation(50))
