"""`lmmeval prepare`: raw study annotations -> one training/evaluation manifest.

Input (a raw folder, synthetic or real, same format):
    videos/<id>.<ext>, ratings.csv (subject,video,dimension,rating),
    marks.jsonl (video, annotator, view, points, description[, width, height]),
    generators.csv (video,generator)
Output folder:
    manifest.jsonl   one record per video (paths relative to the manifest's folder)
    videos/          the videos (hard links where possible, else copies)
    saliency/        distortion-aware saliency maps per snapshot view (16-bit PNG)
    summary.json     counts, MOS statistics, rejected subjects, level and category tables,
                     and for a synthetic study its `lmmeval synth` settings (seed included)

A manifest record:
    {"id", "video", "generator", "fold", "num_frames", "fps", "width", "height",
     "mos": {"quality", "authenticity"}, "level": {"quality", "authenticity"},
     "n_raters": {...}, "categories": [...], "descriptions": {annotator: text},
     "views": {"-45": {"frame": int, "saliency": "saliency/<id>_-45.png", "fixations": [[x, y], ...]}, ...},
     "conversations": [[user, assistant], ...]}
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import combine_categories, compute_mos, points_to_saliency_map, save_saliency_png
from .labels import DIMENSIONS, DISTORTIONS, LEVELS, score_to_level
from .media import VIDEO_SUFFIXES, video_info
from .prompts import DISTORTION_QUESTION, QUESTIONS, conversation, distortion_answer, level_answer


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


def view_to_frame(view_deg: float, num_frames: int, sweep_deg: float = 180.0) -> int:
    """Frame index whose camera azimuth is closest to ``view_deg`` on a uniform orbit."""
    if abs(view_deg) > sweep_deg / 2:
        raise ValueError(f"view {view_deg} deg lies outside the {sweep_deg} deg orbit")
    return int(round((view_deg + sweep_deg / 2) / sweep_deg * (num_frames - 1)))


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


def read_jsonl(path: Path, required: tuple[str, ...]):
    """(line number, record) of a JSON-lines file; blank lines skipped, errors name file, line and field."""
    with open(path) as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {line}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {line}: expected a JSON object")
            for field in required:
                if field not in record:
                    raise ValueError(f"{path}, line {line}: missing field {field!r}")
            yield line, record


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
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare(raw_dir: str | Path, out_dir: str | Path, config: PrepareConfig = PrepareConfig(), progress: bool = True) -> Path:
    """Build ``out_dir/manifest.jsonl`` from a raw study folder; returns the manifest path."""
    from tqdm import tqdm

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
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

    ids = sorted(videos)
    levels = {dim: dict(zip(ids, score_to_level([mos[(v, dim)] for v in ids]))) for dim in DIMENSIONS}
    folds = _stratified_folds(generators, config.folds, config.seed)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "saliency").mkdir(exist_ok=True)
    manifest_path = out_dir / "manifest.jsonl"
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
            views[view] = {"frame": view_to_frame(float(view), info["num_frames"], config.sweep_deg),
                           "saliency": rel, "fixations": points}
        conversations = [conversation(QUESTIONS[dim], level_answer(dim, levels[dim][video])) for dim in DIMENSIONS]
        conversations.append(conversation(DISTORTION_QUESTION, distortion_answer(categories)))
        records.append({
            "id": video, "video": f"videos/{src.name}", "generator": generators[video], "fold": folds[video],
            "num_frames": info["num_frames"], "fps": info["fps"], "width": info["width"], "height": info["height"],
            "mos": {dim: round(mos[(video, dim)], 4) for dim in DIMENSIONS},
            "level": {dim: levels[dim][video] for dim in DIMENSIONS},
            "n_raters": {dim: mos.n_subjects[(video, dim)] for dim in DIMENSIONS},
            "categories": categories, "descriptions": descriptions, "views": views,
            "conversations": conversations,
        })
    with open(manifest_path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    summary = summarize(records)
    summary["rejected_subjects"] = mos.rejected
    if (raw_dir / "synth_config.json").is_file():
        # A synthetic study's render settings, seed included: the same seed renders the same heads,
        # which is how stage 0 tells that a corpus overlaps a held-out study whatever the file bytes.
        summary["synth"] = json.loads((raw_dir / "synth_config.json").read_text())["config"]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return manifest_path


def check_fold(records: list[dict], fold: int, manifest) -> None:
    """``fold`` must be -1 (none held out) or one of the manifest's folds: a typo would
    otherwise hold out nothing (training) or test on nothing (evaluation)."""
    folds = sorted({r["fold"] for r in records})
    if fold != -1 and fold not in folds:
        raise ValueError(f"{manifest}: no record in fold {fold}; its folds are {folds} (-1: use every record)")


def check_disjoint(study: str | Path, study_records: list[dict], others: dict[str, list[dict]]) -> None:
    """Refuse any study in ``others`` ({manifest: records}) that shares videos with ``study``
    (the manifest whose held-out videos are tested), with a ``ValueError`` naming both.

    Disjoint means different renders, not different names (ids repeat across seeds). The
    render seed says it for synthetic studies: libx264 does not always encode the same
    frames to the same bytes, so a same-seed study would share most heads but not every
    file's hash. Byte-identical files are refused too (real studies, or copies).
    """
    seed = synth_seed(study)
    for path in others:
        if seed is not None and synth_seed(path) == seed:
            raise ValueError(f"{study} and {path} were both rendered with `lmmeval synth --seed {seed}` "
                             "(their summary.json), which renders the same heads: render the other study with "
                             "another --seed")
    digests = _digests(study_records)
    for path, records in others.items():
        shared = _digests(records).keys() & digests.keys()
        if shared:
            raise ValueError(f"{study} shares {len(shared)} video(s) with {path} (byte-identical files, e.g. "
                             f"{digests[min(shared)]}): render the other study with another --seed")


def synth_seed(manifest: str | Path) -> int | None:
    """The `lmmeval synth` seed recorded in the prepared study's summary.json (None: not recorded,
    e.g. a real study or one prepared before the seed was recorded)."""
    summary = Path(manifest).parent / "summary.json"
    if not summary.is_file():
        return None
    try:
        return json.loads(summary.read_text()).get("synth", {}).get("seed")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{summary}: not the JSON object `lmmeval prepare` writes; prepare the study again") from None


def _digests(records: list[dict]) -> dict[str, str]:
    """SHA-1 of each video file -> its path."""
    return {hashlib.sha1(Path(r["video_path"]).read_bytes()).hexdigest(): str(r["video_path"]) for r in records}


def load_manifest(path: str | Path) -> list[dict]:
    """Read a manifest, resolving each record's files against the manifest's folder.

    Adds ``video_path`` and per-view ``saliency_path`` (absolute). A path that is
    absolute or escapes the manifest's folder is an error: a manifest is a
    self-contained folder that can be moved or shared as a whole.
    """
    path = Path(path)
    root = path.parent.resolve()
    records = []
    for line, record in read_jsonl(path, ("id", "video", "mos", "level", "categories", "fold")):
        _check_record(record, f"{path}, line {line}")
        record["video_path"] = _inside(root, record["video"], path, line, "video")
        for view, v in record.get("views", {}).items():
            v["saliency_path"] = _inside(root, v["saliency"], path, line, f"views.{view}.saliency")
        records.append(record)
    return records


def _check_record(record: dict, where: str) -> None:
    """The nested fields training and evaluation read, checked once here so a hand-edited manifest
    fails with its line and field rather than as a KeyError deep in a training step."""
    def bad(field: str, expected: str):
        raise ValueError(f"{where}: field {field!r} must be {expected}, got {_value(record, field)!r}")

    for dim in DIMENSIONS:
        mos = record["mos"].get(dim) if isinstance(record["mos"], dict) else None
        # Finite, not clipped to [0, 100]: rescaled Z-scores (Eq. 3) can fall slightly outside.
        if isinstance(mos, bool) or not isinstance(mos, (int, float)) or not np.isfinite(mos):
            bad(f"mos.{dim}", "a finite number")
        if (record["level"].get(dim) if isinstance(record["level"], dict) else None) not in LEVELS:
            bad(f"level.{dim}", f"one of {list(LEVELS)}")
    if isinstance(record["fold"], bool) or not isinstance(record["fold"], int):
        bad("fold", "an integer")
    if not isinstance(record["categories"], list):
        bad("categories", "a list of distortion names")
    unknown = [c for c in record["categories"] if c not in DISTORTIONS]
    if unknown:
        raise ValueError(f"{where}: field 'categories': unknown names {unknown}")
    for field in ("num_frames", "fps"):
        value = record.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            bad(field, "a positive number")
    views = record.get("views", {})
    if not isinstance(views, dict):
        bad("views", "a mapping of view angle to {frame, saliency}")
    for view, v in views.items():
        if not isinstance(v, dict) or not isinstance(v.get("saliency"), str):
            bad(f"views.{view}", "a mapping with a 'saliency' path")
        frame, frames = v.get("frame"), record.get("num_frames")
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0 or (frames and frame >= frames):
            bad(f"views.{view}.frame", f"a frame index in [0, {frames})" if frames else "a frame index >= 0")


def _value(record: dict, dotted: str):
    value = record
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _inside(root: Path, rel: str, manifest: Path, line: int, field: str) -> Path:
    target = (root / rel).resolve()
    if Path(rel).is_absolute() or not target.is_relative_to(root):
        raise ValueError(f"{manifest}, line {line}: field {field!r} = {rel!r} points outside the manifest's folder")
    return target


def summarize(records: list[dict]) -> dict:
    """Dataset statistics: counts, MOS distribution, per-generator means, levels, categories."""
    out: dict = {"videos": len(records), "folds": dict(sorted(Counter(r["fold"] for r in records).items()))}
    for dim in DIMENSIONS:
        values = np.array([r["mos"][dim] for r in records])
        out[f"mos_{dim}"] = {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                             "max": float(values.max())}
        out[f"levels_{dim}"] = {lvl: n for lvl, n in Counter(r["level"][dim] for r in records).most_common()}
    gens = sorted({r["generator"] for r in records})
    out["generators"] = {
        g: {dim: float(np.mean([r["mos"][dim] for r in records if r["generator"] == g])) for dim in DIMENSIONS}
        | {"videos": sum(r["generator"] == g for r in records)}
        for g in gens
    }
    counts = Counter(c for r in records for c in r["categories"])
    out["categories"] = {c: counts.get(c, 0) for c in DISTORTIONS}
    return out
