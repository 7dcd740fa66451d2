"""lmmeval.data.saliency_maps: dots -> Gaussian saliency maps (against scipy), 16-bit PNG round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from lmmeval.data.saliency_maps import load_saliency_png, points_to_fixation_map, points_to_saliency_map, save_saliency_png


def test_saliency_equals_filtered_fixation_map():
    height, width = 40, 50
    points = [(10.4, 5.6), (10, 6), (30, 20)]  # the first two land on the same pixel
    fixations = np.zeros((height, width))
    fixations[6, 10] = 2  # row = y, column = x
    fixations[20, 30] = 1
    expected = gaussian_filter(fixations, 5.0, mode="constant")
    expected /= expected.max()

    saliency = points_to_saliency_map(points, height, width, sigma=5.0)
    assert saliency.dtype == np.float32 and saliency.shape == (height, width)
    np.testing.assert_allclose(saliency, expected, rtol=1e-6, atol=1e-7)
    assert saliency.max() == 1.0
    # The doubly marked spot is twice as salient as the single one.
    assert saliency[20, 30] == pytest.approx(0.5, rel=1e-3)

    fix = points_to_fixation_map(points, height, width)
    assert fix.dtype == bool and fix.shape == (height, width)
    assert np.argwhere(fix).tolist() == [[6, 10], [20, 30]]


def test_saliency_rounding_empty_and_out_of_frame():
    assert np.argwhere(points_to_fixation_map([(2.5, 0.5)], 4, 4)).tolist() == [[1, 3]]  # halves round up
    empty = points_to_saliency_map([], 8, 9)
    assert empty.dtype == np.float32 and empty.shape == (8, 9) and not empty.any()
    with pytest.raises(ValueError, match=r"\(50, 0\)"):
        points_to_saliency_map([(1, 1), (50, 0)], 40, 50)
    with pytest.raises(ValueError, match="outside"):
        points_to_saliency_map([(3, -1)], 40, 50)
    with pytest.raises(ValueError, match=r"point 0 = \(nan, 1\) is not finite"):
        points_to_saliency_map([(float("nan"), 1)], 40, 50)
    with pytest.raises(ValueError, match=r"is not an \(x, y\) pair"):
        points_to_saliency_map([(1, 2, 3)], 40, 50)


def test_saliency_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    saliency = rng.random((33, 47)).astype(np.float32)
    saliency[0, 0], saliency[-1, -1] = 0.0, 1.0
    path = tmp_path / "map.png"
    save_saliency_png(path, saliency)
    with Image.open(path) as img:
        assert img.mode == "I;16"
    loaded = load_saliency_png(path)
    assert loaded.dtype == np.float32 and loaded.shape == saliency.shape
    assert np.abs(loaded.astype(np.float64) - saliency).max() <= 1 / 65535
    assert loaded[0, 0] == 0.0 and loaded[-1, -1] == 1.0

    for bad in (np.full((4, 4), 1.5), np.full((4, 4), -0.1), np.full((4, 4), np.nan)):
        with pytest.raises(ValueError, match=r"bad.png: saliency (values must lie in \[0, 1\]|contains NaN)"):
            save_saliency_png(tmp_path / "bad.png", bad)
