"""Red-dot distortion marks -> distortion-aware saliency maps (paper section 3.3).

Annotators marked distortions with dots on snapshot images; the dots become a fixation map,
smoothed with a Gaussian of sigma = 5 px and normalised to max 1. Maps are stored as 16-bit
grayscale PNGs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def points_to_fixation_map(points: Iterable[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Boolean [height, width] map, True at each marked pixel.

    ``points`` are (x, y) pixel coordinates (x = column, y = row), rounded to the
    nearest pixel (halves round up). A point outside the frame raises ValueError.
    """
    return _fixation_counts(points, height, width) > 0


def _fixation_counts(points: Iterable[Sequence[float]], height: int, width: int) -> np.ndarray:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    counts = np.zeros((int(height), int(width)), dtype=np.float64)
    for i, point in enumerate(points):
        try:
            x, y = (float(v) for v in point)
        except (TypeError, ValueError):
            raise ValueError(f"point {i} = {point!r} is not an (x, y) pair of numbers") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"point {i} = {point!r} is not finite")
        col, row = math.floor(x + 0.5), math.floor(y + 0.5)
        if not (0 <= col < width and 0 <= row < height):
            raise ValueError(f"point {i} = ({x:g}, {y:g}) lies outside the {width}x{height} frame")
        counts[row, col] += 1  # a region marked twice is twice as salient
    return counts


def points_to_saliency_map(points: Iterable[Sequence[float]], height: int, width: int,
                           sigma: float = 5.0) -> np.ndarray:
    """Distortion-aware saliency map, float32 [height, width] with max 1 (paper section 3.3).

    The fixation count map of ``points`` (x, y) is smoothed with a Gaussian of std
    ``sigma`` pixels (zero padding, so marks near the border lose mass off-frame
    rather than piling up at the edge) and divided by its maximum. No points gives
    an all-zero map.
    """
    if not (isinstance(sigma, (int, float, np.integer, np.floating)) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    counts = _fixation_counts(points, height, width)
    if not counts.any():
        return np.zeros((height, width), dtype=np.float32)
    smooth = gaussian_filter(counts, sigma=float(sigma), mode="constant")
    # Normalise in float64 so the peak is exactly 1.0 before the cast.
    return (smooth / smooth.max()).astype(np.float32)


def save_saliency_png(path: str | Path, saliency: np.ndarray) -> None:
    """Store a [H, W] map with values in [0, 1] as a 16-bit grayscale PNG."""
    values = np.asarray(saliency, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"{path}: saliency must be a 2-D [H, W] map, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError(f"{path}: saliency contains NaN")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(f"{path}: saliency values must lie in [0, 1], got [{values.min():g}, {values.max():g}]")
    # 16 bits, not 8: sparse Gaussian maps have long low tails that 1/255 steps would flatten.
    quantised = np.rint(values * 65535).astype(np.uint16)
    image = Image.fromarray(quantised)  # uint16 -> mode "I;16"
    if image.mode != "I;16":
        raise RuntimeError(f"Pillow made a mode {image.mode!r} image from uint16 data")  # not user input
    image.save(path, format="PNG")


def load_saliency_png(path: str | Path) -> np.ndarray:
    """Read a saliency PNG (16-bit, or 8-bit grayscale) back as float32 in [0, 1]."""
    with Image.open(path) as img:
        mode = img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            # Pillow opens 16-bit grayscale PNGs as "I;16" or (older versions) "I".
            data = np.asarray(img).astype(np.float64) / 65535.0
        elif mode == "L":
            data = np.asarray(img).astype(np.float64) / 255.0
        else:
            raise ValueError(f"{path}: expected a grayscale saliency PNG, got mode {mode!r}")
    if data.min() < 0 or data.max() > 1:
        raise ValueError(f"{path}: pixel values outside the 16-bit range")
    return data.astype(np.float32)
