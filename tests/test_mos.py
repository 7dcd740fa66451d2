"""lmmeval.data.mos: MOS (paper Eq. 1-3) against a hand-worked table, BT.500 screening, input validation."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from lmmeval.data.mos import MOSTable, compute_mos, screen_subjects

# -----------------------------------------------------------------------------
# MOS: a table worked out by hand
#
# Three subjects rate four videos (dimension "quality"):
#            v1  v2  v3  v4    mu    sigma (N-1)
#   S1        1   2   3   4    2.5   sqrt(5/3) = 1.290994448736
#   S2        2   2   4   4    3.0   sqrt(4/3) = 1.154700538379
#   S3        5   3   1   3    3.0   sqrt(8/3) = 1.632993161855
# z = (r - mu) / sigma:
#   S1  -1.161895003862  -0.387298334621   0.387298334621   1.161895003862
#   S2  -0.866025403784  -0.866025403784   0.866025403784   0.866025403784
#   S3   1.224744871392   0                -1.224744871392   0
# z' = 100 (z + 3) / 6:
#   S1  30.635083268963  43.545027756321  56.454972243679  69.364916731037
#   S2  35.566243270259  35.566243270259  64.433756729741  64.433756729741
#   S3  70.412414523193  50.000000000000  29.587585476807  50.000000000000
# MOS = column means:
#       45.537913687472  43.037090342193  50.158771483409  61.266224486926

HAND_RATINGS = {"S1": (1, 2, 3, 4), "S2": (2, 2, 4, 4), "S3": (5, 3, 1, 3)}
HAND_MOS = {"v1": 45.537913687472, "v2": 43.037090342193, "v3": 50.158771483409, "v4": 61.266224486926}


def _hand_rows():
    return [(s, f"v{j + 1}", "quality", float(r)) for s, rs in HAND_RATINGS.items() for j, r in enumerate(rs)]


def _check_hand_table(mos):
    assert isinstance(mos, MOSTable)
    assert set(mos) == {(v, "quality") for v in HAND_MOS}
    for video, expected in HAND_MOS.items():
        assert mos[(video, "quality")] == pytest.approx(expected, abs=1e-9)
        assert mos.n_subjects[(video, "quality")] == 3
    assert mos.rejected == {}
    assert mos.for_dimension("quality") == pytest.approx(HAND_MOS, abs=1e-9)


def test_mos_hand_table_tuples():
    _check_hand_table(compute_mos(_hand_rows(), screen=False))
    # Exact closed forms of one entry, as a second check of the arithmetic above.
    z = [-1.5 / math.sqrt(5 / 3), -1 / math.sqrt(4 / 3), 2 / math.sqrt(8 / 3)]
    expected_v1 = sum(100 * (zi + 3) / 6 for zi in z) / 3
    assert compute_mos(_hand_rows(), screen=False)[("v1", "quality")] == pytest.approx(expected_v1, abs=1e-12)


def test_mos_hand_table_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    lines = ["subject,video,dimension,rating"] + [f"{s},{v},{d},{r}" for s, v, d, r in _hand_rows()]
    path.write_text("\n".join(lines) + "\n")
    _check_hand_table(compute_mos(path, screen=False))
    _check_hand_table(compute_mos(str(path), screen=False))


def test_mos_dimensions_are_independent():
    # Adding an authenticity rating set must not change the quality MOS.
    rows = _hand_rows() + [(s, v, "authenticity", 5.0 - r) for s, v, _, r in _hand_rows()]
    mos = compute_mos(rows, screen=False)
    for video, expected in HAND_MOS.items():
        assert mos[(video, "quality")] == pytest.approx(expected, abs=1e-9)
        # 5 - r flips every z, so z' -> 100 - z'.
        assert mos[(video, "authenticity")] == pytest.approx(100 - expected, abs=1e-9)


# -----------------------------------------------------------------------------
# BT.500 subject screening


def _panel(seed=0, n_videos=40):
    """20 consistent raters (truth + N(0, 0.8)) and one rater answering 0 or 5 at random."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(2, 3, size=n_videos)
    rows = []
    for s in range(20):
        for j, t in enumerate(truth):
            rows.append((f"s{s:02d}", f"v{j:02d}", "quality", float(np.clip(t + rng.normal(0, 0.8), 0, 5))))
    extremes = rng.permutation([0.0, 5.0] * (n_videos // 2))
    outlier = [("odd", f"v{j:02d}", "quality", float(x)) for j, x in enumerate(extremes)]
    return rows, outlier


def test_screening_rejects_random_extreme_rater(caplog):
    consistent, outlier = _panel()
    assert screen_subjects(consistent + outlier) == {"quality": ["odd"]}
    assert screen_subjects(consistent) == {"quality": []}

    caplog.set_level(logging.WARNING, logger="lmmeval")
    mos = compute_mos(consistent + outlier)
    assert mos.rejected == {"quality": ["odd"]}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "lmmeval"]
    assert warnings and "odd" in warnings[0].getMessage()
    # The rejected rater is left out of the MOS entirely.
    without = compute_mos(consistent, screen=False)
    assert set(mos) == set(without)
    for key in mos:
        assert mos[key] == pytest.approx(without[key], abs=1e-9)
        assert mos.n_subjects[key] == 20


def test_screening_keeps_one_sided_rater():
    # A rater who is always far above the panel is outside the limits on most
    # videos, but only on one side: BT.500 keeps them (the Z-score absorbs the bias).
    consistent, _ = _panel()
    truth = {}
    for _, video, _, r in consistent:
        truth.setdefault(video, []).append(r)
    high = [("high", v, "quality", min(5.0, float(np.mean(rs)) + 2.2)) for v, rs in truth.items()]
    panel = consistent + high
    n_outside = 0
    for video, rs in truth.items():
        values = np.array(rs + [min(5.0, float(np.mean(rs)) + 2.2)])
        n_outside += values[-1] >= values.mean() + 2 * values.std(ddof=1)
    assert n_outside > 0.5 * len(truth)  # flagged often, yet...
    assert screen_subjects(panel) == {"quality": []}


def test_screening_kurtosis_branch_uses_sqrt20():
    # Per video: 18 raters agree exactly, one is 0.1 above, "odd" is 1.0 off
    # (alternately above and below). The scores are far from normal (beta2 > 4),
    # so the limits are mean +- sqrt(20) std, and "odd" stays inside them although
    # it is outside mean +- 2 std: with the normal-case limits it would be rejected.
    rows = []
    for j in range(10):
        x = 1.5 + 0.2 * j
        for s in range(18):
            rows.append((f"s{s:02d}", f"v{j}", "quality", x))
        rows.append(("calm", f"v{j}", "quality", x + 0.1))
        rows.append(("odd", f"v{j}", "quality", x + (1.0 if j % 2 else -1.0)))
    for j in range(10):
        values = np.array([r for _, v, _, r in rows if v == f"v{j}"])
        dev = values - values.mean()
        beta2 = np.mean(dev ** 4) / np.mean(dev ** 2) ** 2
        std = values.std(ddof=1)
        assert beta2 > 4
        assert 2 * std < abs(values[-1] - values.mean()) < math.sqrt(20) * std
    assert screen_subjects(rows) == {"quality": []}


def test_video_without_kept_ratings_raises():
    consistent, outlier = _panel()
    lonely = [("odd", "lonely", "quality", 5.0)]
    with pytest.raises(ValueError, match="lonely"):
        compute_mos(consistent + outlier + lonely)
    # Without screening the same video is fine.
    assert compute_mos(consistent + outlier + lonely, screen=False).n_subjects[("lonely", "quality")] == 1


# -----------------------------------------------------------------------------
# input validation


def _write_csv(tmp_path, body, name="ratings.csv"):
    path = tmp_path / name
    path.write_text("subject,video,dimension,rating\n" + body)
    return path


def test_csv_rating_out_of_range_names_file_line_field(tmp_path):
    path = _write_csv(tmp_path, "S1,v1,quality,1\nS1,v2,quality,5.5\nS1,v3,quality,2\n", name="my_ratings.csv")
    with pytest.raises(ValueError, match="my_ratings.csv") as err:
        compute_mos(path)
    message = str(err.value)
    assert "my_ratings.csv" in message and "line 3" in message and "rating" in message


def test_csv_validation_errors(tmp_path):
    cases = {
        "S1,v1,quality,abc\nS1,v2,quality,2\n": ("line 2", "rating"),
        "S1,v1,quality,-0.1\nS1,v2,quality,2\n": ("line 2", "rating"),
        "S1,v1,quality,nan\nS1,v2,quality,2\n": ("line 2", "rating"),
        "S1,v1,quality,1\nS1,v2,sharpness,2\n": ("line 3", "dimension"),
        "S1,v1,quality,1\nS1,,quality,2\n": ("line 3", "video"),
        "S1,v1,quality,1\nS1,v2,quality\n": ("line 3", "rating"),
        "S1,v1,quality,1\nS1,v2,quality,2\nS1,v1,quality,3\n": ("line 4", "duplicate"),
        "S1,v1,quality,1\nS1,v2,quality,2\nS2,v1,quality,3\n": ("line 4", "only one rating"),
        "S1,v1,quality,1\nS1,v2,quality,1\n": ("line 2", "same rating"),
    }
    for body, (line, word) in cases.items():
        path = _write_csv(tmp_path, body)
        with pytest.raises(ValueError, match="ratings.csv") as err:
            compute_mos(path, screen=False)
        assert "ratings.csv" in str(err.value) and line in str(err.value) and word in str(err.value), body

    missing = tmp_path / "nocol.csv"
    missing.write_text("subject,video,score\nS1,v1,3\n")
    with pytest.raises(ValueError, match=r"nocol\.csv.*column.*dimension"):
        compute_mos(missing)


def test_tuple_validation_errors_name_the_index():
    with pytest.raises(ValueError, match=r"ratings\[1\].*dimension"):
        compute_mos([("S1", "v1", "quality", 1), ("S1", "v2", "realism", 2)])
    with pytest.raises(ValueError, match=r"ratings\[2\].*duplicate"):
        compute_mos([("S1", "v1", "quality", 1), ("S1", "v2", "quality", 2), ("S1", "v2", "quality", 3)])
    with pytest.raises(ValueError, match=r"ratings\[2\].*only one rating"):
        compute_mos([("S1", "v1", "quality", 1), ("S1", "v2", "quality", 2), ("S2", "v1", "quality", 3)])
    with pytest.raises(ValueError, match=r"ratings\[0\].*rating"):
        compute_mos([("S1", "v1", "quality", 5.5), ("S1", "v2", "quality", 2)])
    with pytest.raises(ValueError, match=r"ratings\[0\]"):
        compute_mos([("S1", "v1", "quality")])
    with pytest.raises(ValueError, match="no ratings given"):
        compute_mos([])
