"""`lmmeval prepare`: raw study annotations -> one training/evaluation manifest.

Input (a raw folder, synthetic or real, same format):
    videos/<id>.<ext>, ratings.csv (subject,video,dimension,rating),
    marks.jsonl (video, annotator, view, points, description[, width, height]),
    generators.csv (video,generator)
Output folder:
    manifest.jsonl   one record per video (``lmmeval.data.manifest``; paths relative to its folder)
    videos/          the videos (hard links where possible, else copies)
    saliency/        distortion-aware saliency maps per snapshot view (16-bit PNG)
    summary.json     counts, MOS statistics, rejected subjects, level and category tables,
                     and for a synthetic study its `lmmeval synth` settings (seed included)

The output folder is built beside its final place and renamed there once complete
(``lmmeval.data.folders``): it may not be or overlap the raw folder, and an existing non-empty
one is replaced only with ``overwrite``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.media import VIDEO_SUFFIXES, video_info
from ..labels import DIMENSIONS, score_to_level
from ..orbit import view_to_frame
from .descriptions import combine_categories
from .folders import check_output_folder, staged_folder
from .manifest import Record, View, read_jsonl, write_manifest
from .mos import compute_mos
from .saliency_maps import points_to_saliency_map, save_saliency_png
from .stats import summarize


@dataclass(frozen=True)
class PrepareConfig:
    folds: int = 5  # cross-validation folds, stratified by generator
    seed: int = 0  # fold assignment
    min_votes: int = 1  # annotators who must name a category for the video to have it
    sigma: float = 5.0  # Gaussian sigma (pixels) turning dots into saliency maps (paper: 5)
    sweep_deg: float = 180.0  # orbit of the videos: maps a snapshot view angle to a frame

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if self.min_votes < 1:
            raise ValueError(f"min_votes must be >= 1, got {self.min_votes}")


def read_generators(path: Path) -> dict[str, str]:
    generators = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video", "generator"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected header video,generator")
        for line, row in enumerate(reader, start=2):
            video, generator = (row["video"] or "").strip(), (row["generator"] or "").strip()
            if not video or not generator:
                raise ValueError(f"{path}, line {line}: empty field {'video' if not video else 'generator'}")
            if video in generators:
                raise ValueError(f"{path}, line {line}: video {video!r} listed twice")
            generators[video] = generator
    return generators


def read_marks(path: Path) -> dict[str, list[dict]]:
    """marks.jsonl grouped by video, each record validated (errors name file, line and field)."""
    by_video: dict[str, list[dict]] = defaultdict(list)
    seen = set()
    for line, record in read_jsonl(path, ("video", "annotator", "view", "points", "description")):
        if not isinstance(record["description"], str):
            raise ValueError(f"{path}, line {line}: field 'description' must be a string")
        if not isinstance(record["points"], list) or any(
            not isinstance(p, (list, tuple)) or len(p) != 2 for p in record["points"]
        ):
            raise ValueError(f"{path}, line {line}: field 'points' must be a list of [x, y] pairs")
        try:  # the view angle becomes a frame index later, where the line is no longer known
            float(record["view"])
        except (TypeError, ValueError):
            raise ValueError(f"{path}, line {line}: field 'view' must be a view angle in degrees, "
                             f"got {record['view']!r}") from None
        key = (record["video"], record["annotator"], str(record["view"]))
        if key in seen:
            raise ValueError(f"{path}, line {line}: duplicate record for video/annotator/view {key}")
        seen.add(key)
        record["_line"] = line
        by_video[record["video"]].append(record)
    return by_video


def _stratified_folds(generators: dict[str, str], folds: int, seed: int) -> dict[str, int]:
    """Fold per video: each generator's videos shuffled and dealt round-robin over the folds."""
    rng = np.random.default_rng(seed)
    by_gen: dict[str, list[str]] = defaultdict(list)
    for video, gen in sorted(generators.items()):
        by_gen[gen].append(video)
    assignment, offset = {}, 0
    for gen in sorted(by_gen):
        videos = by_gen[gen]
        for rank, i in enumerate(rng.permutation(len(videos))):
            # Continue the deal where the previous generator stopped, so fold sizes stay even.
            assignment[videos[i]] = (offset + rank) % folds
        offset += len(videos)
    return assignment


def _link_or_copy(src: Path, dst: Path) -> None:
    # dst is in a fresh staging folder: nothing there to replace (unlinking an existing dst once
    # deleted the raw video itself when the output folder was the raw folder).
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare(raw_dir: str | Path, out_dir: str | Path, config: PrepareConfig = PrepareConfig(), progress: bool = True,
            overwrite: bool = False) -> Path:
    """Build ``out_dir/manifest.jsonl`` from a raw study folder; returns the manifest path. An
    existing non-empty ``out_dir`` is replaced only with ``overwrite`` (once the new one is complete)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    check_output_folder(out_dir, {"raw folder": raw_dir}, overwrite)
    for name in ("ratings.csv", "marks.jsonl", "generators.csv", "videos"):
        if not (raw_dir / name).exists():
            raise FileNotFoundError(f"{raw_dir / name}: missing (expected a raw study folder, see `lmmeval prepare --help`)")
    mos = compute_mos(raw_dir / "ratings.csv")
    generators = read_generators(raw_dir / "generators.csv")
    marks = read_marks(raw_dir / "marks.jsonl")
    videos = {p.stem: p for p in sorted((raw_dir / "videos").iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}

    rated = {video for video, _ in mos}
    problems = []
    for video in sorted(rated | set(generators) | set(marks) | set(videos)):
        where = [name for name, keys in (("ratings.csv", rated), ("generators.csv", generators),
                                          ("marks.jsonl", marks), ("videos/", videos)) if video not in keys]
        if where:
            problems.append(f"{video}: missing from {', '.join(where)}")
    if problems:
        raise ValueError(f"{raw_dir}: the raw files disagree on which videos exist:\n  " + "\n  ".join(problems[:20])
                         + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""))

    with staged_folder(out_dir) as staging:
        _write(raw_dir, staging, config, progress, mos, generators, marks, videos)
    return out_dir / "manifest.jsonl"


def _write(raw_dir: Path, out_dir: Path, config: PrepareConfig, progress: bool, mos, generators: dict[str, str],
           marks: dict[str, list[dict]], videos: dict[str, Path]) -> None:
    """The prepared folder's contents, written into ``out_dir`` (the staging folder)."""
    from tqdm import tqdm

    ids = sorted(videos)
    levels = {dim: dict(zip(ids, score_to_level([mos[(v, dim)] for v in ids]))) for dim in DIMENSIONS}
    folds = _stratified_folds(generators, config.folds, config.seed)
    (out_dir / "videos").mkdir()
    (out_dir / "saliency").mkdir()
    records = []
    for video in tqdm(ids, desc="preparing", unit="video", disable=not progress):
        src = videos[video]
        info = video_info(src)
        _link_or_copy(src, out_dir / "videos" / src.name)
        descriptions, by_view = defaultdict(list), defaultdict(list)
        for m in marks[video]:
            # An annotator may describe each view separately: keep every distinct text.
            if m["description"] not in descriptions[m["annotator"]]:
                descriptions[m["annotator"]].append(m["description"])
            by_view[str(m["view"])].extend(m["points"])
            h, w = int(m.get("height", info["height"])), int(m.get("width", info["width"]))
            if (h, w) != (info["height"], info["width"]):
                raise ValueError(f"{raw_dir / 'marks.jsonl'}, line {m['_line']}: snapshot size {w}x{h} differs "
                                 f"from the video's {info['width']}x{info['height']}")
        descriptions = {a: " / ".join(texts) for a, texts in descriptions.items()}
        categories = combine_categories(list(descriptions.values()), min_votes=config.min_votes)
        views = {}
        for view, points in sorted(by_view.items(), key=lambda kv: float(kv[0])):
            try:
                saliency = points_to_saliency_map(points, info["height"], info["width"], sigma=config.sigma)
            except ValueError as err:
                lines = sorted(m["_line"] for m in marks[video] if str(m["view"]) == view)
                raise ValueError(f"{raw_dir / 'marks.jsonl'}, line(s) {lines}: field 'points': {err}") from None
            rel = f"saliency/{video}_{view}.png"
            save_saliency_png(out_dir / rel, saliency)
            views[view] = View(frame=view_to_frame(float(view), info["num_frames"], config.sweep_deg), saliency=rel,
                               fixations=points, saliency_path=(out_dir / rel).resolve())
        records.append(Record(
            id=video, video=f"videos/{src.name}", generator=generators[video], fold=folds[video],
            num_frames=info["num_frames"], fps=info["fps"], width=info["width"], height=info["height"],
            mos={dim: round(mos[(video, dim)], 4) for dim in DIMENSIONS},
            level={dim: levels[dim][video] for dim in DIMENSIONS},
            n_raters={dim: mos.n_subjects[(video, dim)] for dim in DIMENSIONS},
            categories=categories, descriptions=descriptions, views=views,
            video_path=(out_dir / "videos" / src.name).resolve(),
        ))
    write_manifest(out_dir / "manifest.jsonl", records)
    summary = summarize(records)
    summary["rejected_subjects"] = mos.rejected
    summary["prepare"] = dataclasses.asdict(config)  # how the folds, categories and maps were made
    if (raw_dir / "synth_config.json").is_file():
        # A synthetic study's render settings, seed included: the same seed renders the same heads,
        # which is how stage 0 tells that a corpus overlaps a held-out study whatever the file bytes.
        summary["synth"] = json.loads((raw_dir / "synth_config.json").read_text())["config"]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
