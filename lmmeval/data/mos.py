"""Slider ratings -> MOS (paper section 3.3, Eq. 1-3).

The study's quality and authenticity sliders (0-5) become MOS by ITU-R BT.500-13 subject
screening followed by per-subject Z-scores rescaled onto the MOS scale (``SCORE_RANGE``):
``screen_subjects``, ``compute_mos``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import DIMENSIONS, SCORE_RANGE

logger = logging.getLogger("lmmeval")

RATING_MIN, RATING_MAX = 0.0, 5.0  # the study's slider range
RATING_COLUMNS = ("subject", "video", "dimension", "rating")


@dataclass(frozen=True)
class _Rating:
    subject: str
    video: str
    dimension: str
    rating: float
    where: str  # "ratings.csv, line 7" or "ratings[6]", for error messages


class MOSTable(dict):
    """``{(video, dimension): MOS}`` with the screening result attached.

    Attributes:
        rejected: ``{dimension: [subject ids rejected by BT.500 screening]}``.
        n_subjects: ``{(video, dimension): number of subjects averaged into the MOS}``.
    """

    def __init__(self, scores: dict[tuple[str, str], float], rejected: dict[str, list[str]],
                 n_subjects: dict[tuple[str, str], int]):
        super().__init__(scores)
        self.rejected = rejected
        self.n_subjects = n_subjects

    def for_dimension(self, dimension: str) -> dict[str, float]:
        """``{video: MOS}`` of one dimension."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
        return {video: mos for (video, dim), mos in self.items() if dim == dimension}


def _parse_id(value: object, field: str, where: str) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(f"{where}: field {field!r} is empty")
    return text


def _parse_rating(value: object, where: str) -> float:
    # bool is an int subclass; True as a rating is surely a bug upstream.
    if isinstance(value, bool):
        raise ValueError(f"{where}: field 'rating' must be a number, got {value!r}")
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: field 'rating' is empty")
        try:
            rating = float(value)
        except ValueError:
            raise ValueError(f"{where}: field 'rating' must be a number, got {value!r}") from None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        rating = float(value)
    else:
        raise ValueError(f"{where}: field 'rating' must be a number, got {value!r}")
    # "not (lo <= r <= hi)" also catches NaN.
    if not RATING_MIN <= rating <= RATING_MAX:
        raise ValueError(f"{where}: field 'rating' = {value!r} is outside the slider range "
                         f"[{RATING_MIN:g}, {RATING_MAX:g}]")
    return rating


def _parse_dimension(value: object, where: str) -> str:
    dimension = _parse_id(value, "dimension", where).lower()
    if dimension not in DIMENSIONS:
        raise ValueError(f"{where}: field 'dimension' = {value!r} is not one of {DIMENSIONS}")
    return dimension


def _read_ratings_csv(path: Path) -> list[_Rating]:
    records = []
    # utf-8-sig: spreadsheets often prepend a BOM, which would corrupt the first column name.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected the header {','.join(RATING_COLUMNS)}")
        header = [h.strip().lower() for h in header]
        missing = [c for c in RATING_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}, line 1: missing column(s) {missing}; expected the header "
                             f"{','.join(RATING_COLUMNS)}, got {','.join(header)}")
        index = {c: header.index(c) for c in RATING_COLUMNS}
        for row in reader:
            line = reader.line_num  # physical line of the row's end: what an editor shows
            if not any(cell.strip() for cell in row):
                continue  # blank lines are harmless
            where = f"{path}, line {line}"
            cells = {}
            for column, i in index.items():
                if i >= len(row) or not row[i].strip():
                    raise ValueError(f"{where}: field {column!r} is missing or empty")
                cells[column] = row[i].strip()
            records.append(_Rating(
                subject=_parse_id(cells["subject"], "subject", where),
                video=_parse_id(cells["video"], "video", where),
                dimension=_parse_dimension(cells["dimension"], where),
                rating=_parse_rating(cells["rating"], where),
                where=where,
            ))
    if not records:
        raise ValueError(f"{path}: no ratings after the header")
    return records


def _read_ratings(ratings: Iterable[Sequence] | str | Path) -> list[_Rating]:
    """Parse and validate ratings from a CSV path or an iterable of 4-tuples."""
    if isinstance(ratings, (str, Path)):
        records = _read_ratings_csv(Path(ratings))
    else:
        records = []
        for i, item in enumerate(ratings):
            where = f"ratings[{i}]"
            if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 4:
                raise ValueError(f"{where}: expected a (subject, video, dimension, rating) tuple, got {item!r}")
            subject, video, dimension, rating = item
            records.append(_Rating(
                subject=_parse_id(subject, "subject", where),
                video=_parse_id(video, "video", where),
                dimension=_parse_dimension(dimension, where),
                rating=_parse_rating(rating, where),
                where=where,
            ))
        if not records:
            raise ValueError("ratings: no ratings given")

    seen: dict[tuple[str, str, str], str] = {}
    for r in records:
        key = (r.subject, r.video, r.dimension)
        if key in seen:
            raise ValueError(f"{r.where}: duplicate rating for subject {r.subject!r}, video {r.video!r}, "
                             f"dimension {r.dimension!r} (first given at {seen[key]})")
        seen[key] = r.where

    # Z-scores need a per-subject standard deviation; check it exists for everyone
    # before screening, since a malformed subject is an input error, not an outlier.
    by_subject: dict[tuple[str, str], list[_Rating]] = defaultdict(list)
    for r in records:
        by_subject[(r.subject, r.dimension)].append(r)
    for (subject, dimension), rs in by_subject.items():
        if len(rs) < 2:
            raise ValueError(f"{rs[0].where}: subject {subject!r} has only one rating in dimension "
                             f"{dimension!r}; a Z-score needs at least two")
        if len({r.rating for r in rs}) == 1:
            raise ValueError(f"{rs[0].where}: subject {subject!r} gave the same rating {rs[0].rating:g} to all "
                             f"{len(rs)} videos in dimension {dimension!r}; the Z-score is undefined (sigma = 0)")
    return records


def _outlier_limits(values: np.ndarray) -> tuple[float, float] | None:
    """BT.500-13 Annex 2 §2.3.1 limits (lower, upper) for one presentation's ratings.

    The kurtosis beta2 = m4 / m2^2 (moments with 1/N) decides whether the scores are
    treated as normal (2 <= beta2 <= 4: mean +- 2 std) or not (mean +- sqrt(20) std).
    Returns None when the ratings cannot flag anyone (fewer than two, or all equal:
    with std 0 every rating would sit on both limits at once).
    """
    if values.size < 2:
        return None
    mean = values.mean()
    std = values.std(ddof=1)
    if std == 0:
        return None
    dev = values - mean
    m2 = np.mean(dev ** 2)
    m4 = np.mean(dev ** 4)
    beta2 = m4 / m2 ** 2
    k = 2.0 if 2.0 <= beta2 <= 4.0 else math.sqrt(20.0)
    return float(mean - k * std), float(mean + k * std)


def _screen(records: list[_Rating]) -> dict[str, list[str]]:
    rejected: dict[str, list[str]] = {}
    for dimension in DIMENSIONS:
        rs = [r for r in records if r.dimension == dimension]
        if not rs:
            continue
        by_video: dict[str, list[_Rating]] = defaultdict(list)
        for r in rs:
            by_video[r.video].append(r)
        n_ratings = Counter(r.subject for r in rs)
        high: Counter[str] = Counter()  # P_i
        low: Counter[str] = Counter()  # Q_i
        for video_rs in by_video.values():
            limits = _outlier_limits(np.array([r.rating for r in video_rs]))
            if limits is None:
                continue
            lower, upper = limits
            for r in video_rs:
                if r.rating >= upper:
                    high[r.subject] += 1
                if r.rating <= lower:
                    low[r.subject] += 1
        out = []
        for subject in sorted(n_ratings):
            p, q = high[subject], low[subject]
            # Reject subjects who are often outside the limits, and about as often
            # above as below: a consistent offset is left to the Z-score to fix.
            if p + q > 0 and (p + q) / n_ratings[subject] > 0.05 and abs((p - q) / (p + q)) < 0.3:
                out.append(subject)
        rejected[dimension] = out
    return rejected


def screen_subjects(ratings: Iterable[Sequence] | str | Path) -> dict[str, list[str]]:
    """ITU-R BT.500-13 subject screening, per dimension: ``{dimension: [rejected subject ids]}``.

    ``ratings``: ``(subject, video, dimension, rating)`` tuples or a CSV path, as for
    ``compute_mos``. Every dimension present in the ratings gets a key.
    """
    return _screen(_read_ratings(ratings))


def compute_mos(ratings: Iterable[Sequence] | str | Path, screen: bool = True) -> MOSTable:
    """Raw 0-5 slider ratings -> MOS per (video, dimension) (paper Eq. 1-3).

    ``ratings`` is an iterable of ``(subject, video, dimension, rating)`` tuples or the
    path of a CSV with header ``subject,video,dimension,rating``. Subject and video
    ids are kept as (stripped) strings. With ``screen`` the BT.500 screening runs
    first and rejected subjects are dropped from that dimension (logged as a
    warning). Then each subject's ratings in a dimension become Z-scores (sigma with
    N_i - 1), rescaled by (z + 3) / 6 onto SCORE_RANGE (0-100), and averaged over the subjects per video.
    """
    records = _read_ratings(ratings)
    rejected = _screen(records) if screen else {}
    for dimension, subjects in rejected.items():
        if subjects:
            logger.warning("BT.500 screening rejected %d subject(s) in dimension %r: %s",
                           len(subjects), dimension, ", ".join(subjects))
    dropped = {(s, d) for d, subjects in rejected.items() for s in subjects}

    # Every (video, dimension) in the input must get a MOS, so remember them all
    # before dropping anyone: a video rated only by rejected subjects must fail loudly.
    keys = list(dict.fromkeys((r.video, r.dimension) for r in records))
    by_subject: dict[tuple[str, str], list[_Rating]] = defaultdict(list)
    for r in records:
        if (r.subject, r.dimension) not in dropped:
            by_subject[(r.subject, r.dimension)].append(r)

    lo, hi = SCORE_RANGE
    rescaled: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rs in by_subject.values():
        values = np.array([r.rating for r in rs])
        mu, sigma = values.mean(), values.std(ddof=1)  # sigma > 0 checked in _read_ratings
        for r, z in zip(rs, (values - mu) / sigma):
            rescaled[(r.video, r.dimension)].append(lo + (hi - lo) * (z + 3.0) / 6.0)  # Eq. 3

    scores, n_subjects = {}, {}
    for key in keys:
        if not rescaled.get(key):
            video, dimension = key
            raise ValueError(f"video {video!r} has no ratings left in dimension {dimension!r} after "
                             f"rejecting subjects {rejected.get(dimension, [])}; cannot compute its MOS")
        scores[key] = float(np.mean(rescaled[key]))
        n_subjects[key] = len(rescaled[key])
    return MOSTable(scores, rejected, n_subjects)
