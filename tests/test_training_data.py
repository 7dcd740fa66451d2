"""Training data order: the token estimate against the processor, and length-grouped batches."""

from types import SimpleNamespace

import numpy as np
import pytest

from lmmeval.io.media import load_visual, write_video
from lmmeval.model.configuration import SamplingConfig
from lmmeval.model.presets import geometry
from lmmeval.model.processing import build_batch
from lmmeval.training.data import GROUP_WINDOW, ManifestData, estimated_tokens

GEOMETRY = geometry("tiny")


def _record(num_frames, fps, width, height):
    """A manifest record with only the fields the estimate reads."""
    return SimpleNamespace(id="v", num_frames=num_frames, fps=fps, width=width, height=height)


@pytest.mark.parametrize("size, frames, fps", [((112, 112), 17, 8.0), ((168, 112), 9, 8.0), ((112, 224), 40, 10.0)])
def test_estimate_matches_the_processor(tiny_assessor, tmp_path, size, frames, fps):
    """The estimate from manifest fields alone equals the video tokens the processor makes,
    for several frame sizes and durations (and so depends on each of them)."""
    h, w = size
    path = write_video(tmp_path / "v.mp4", np.random.default_rng(0).integers(0, 255, (frames, h, w, 3), np.uint8), fps)
    record = _record(frames, fps, w, h)
    assert tiny_assessor.parts.geometry == GEOMETRY
    for sampling in (SamplingConfig(fps=4.0, max_frames=8, max_pixels=112 * 224),
                     SamplingConfig(fps=2.0, max_frames=16, max_pixels=112 * 112)):
        batch = build_batch(tiny_assessor.processor, [load_visual(str(path), sampling, GEOMETRY)], ("quality",))
        tokens = int(batch.video_grid_thw[0].prod()) // 4  # 2x2 merge
        assert estimated_tokens(record, sampling, GEOMETRY) == tokens


def _records(n, seed=0):
    """Manifest-like records of mixed sizes and durations (only the fields the estimate reads)."""
    rng = np.random.default_rng(seed)
    sides = rng.choice([224, 336, 448], size=n)
    return [_record(int(f), 8.0, int(s), int(s)) for f, s in zip(rng.integers(9, 129, size=n), sides)]


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
    plain = ManifestData(records, None, sampling, GEOMETRY, ("quality",), seed=3)
    grouped = ManifestData(records, None, sampling, GEOMETRY, ("quality",), seed=3, group_by_length=True,
                           global_batch=batch * world)
    lengths = np.array([estimated_tokens(r, sampling, GEOMETRY) for r in records])
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
    data = ManifestData(records, None, SamplingConfig(), GEOMETRY, ("quality",), seed=7)
    assert np.array_equal(data.order(2), np.random.default_rng([7, 2]).permutation(50))
