"""The manifest: one JSON line per video, the data contract between preparation, training and evaluation.

``lmmeval prepare`` writes it; everything else reads it through ``load_manifest``, which
checks each line once and returns typed ``Record``s. A manifest is a self-contained folder:
paths in it are relative to the manifest's folder, and one that is absolute or leaves the
folder is an error, so the folder can be moved or shared as a whole.

One line (keys in this order; ``views`` may be empty, the four video facts, ``generator`` and
``split`` may be absent or null)::

    {"id", "video", "generator", "fold", "split", "num_frames", "fps", "width", "height",
     "mos": {"quality", "authenticity"}, "level": {"quality", "authenticity"},
     "n_raters": {...}, "categories": [...] or null, "descriptions": {annotator: text},
     "views": {"-45": {"frame": int, "saliency": "saliency/<id>_-45.png", "fixations": [[x, y], ...]}, ...}}

``fold`` is the record's cross-validation fold; ``split`` an official split a dataset comes with
(Gen3DHF's "train" / "eval"). ``categories`` null means the distortions were not labelled (not
that there are none: that is ["No Distortion"]).

The questions and answers a record is trained on are not stored: they come from
``lmmeval.prompts`` (manifests of earlier versions carry a ``conversations`` key, ignored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..labels import DIMENSIONS, DISTORTIONS, LEVELS

REQUIRED = ("id", "video", "mos", "level", "categories", "fold")
# Written by earlier versions of `lmmeval prepare`; nothing reads it (the prompts module is the source).
LEGACY_KEYS = ("conversations",)


@dataclass(frozen=True)
class View:
    """One annotated snapshot view of a video (e.g. -45, 0, +45 degrees)."""

    frame: int  # the video frame this view shows
    saliency: str  # its saliency map, relative to the manifest's folder
    fixations: list[list[float]]  # the annotators' dots, (x, y) pixels
    saliency_path: Path  # the map, absolute

    def to_json(self) -> dict:
        return {"frame": self.frame, "saliency": self.saliency, "fixations": self.fixations}


@dataclass(frozen=True)
class Record:
    """One video of a manifest."""

    id: str
    video: str  # relative to the manifest's folder
    fold: int
    mos: dict[str, float]  # per dimension, on SCORE_RANGE
    level: dict[str, str]  # per dimension, one of LEVELS (paper Eq. 4)
    categories: list[str] | None  # DISTORTIONS names; None: not labelled
    video_path: Path  # the video, absolute
    generator: str | None = None
    split: str | None = None  # an official split, e.g. "train" / "eval"
    num_frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    n_raters: dict[str, int] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The manifest line (``video_path`` and the views' ``saliency_path`` are not stored)."""
        return {"id": self.id, "video": self.video, "generator": self.generator, "fold": self.fold,
                "split": self.split, "num_frames": self.num_frames, "fps": self.fps, "width": self.width, "height": self.height,
                "mos": self.mos, "level": self.level, "n_raters": self.n_raters, "categories": self.categories,
                "descriptions": self.descriptions, "views": {k: v.to_json() for k, v in self.views.items()}}

    @classmethod
    def from_json(cls, data: dict, root: Path, where: str) -> Record:
        """Check one manifest line (``where``: "manifest.jsonl, line 3" for errors) and type it;
        ``root`` is the manifest's folder, against which its paths resolve."""
        for key in REQUIRED:
            if key not in data:
                raise ValueError(f"{where}: missing field {key!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"video_path"}
        if unknown := sorted(set(data) - known - set(LEGACY_KEYS)):
            raise ValueError(f"{where}: unknown field(s) {unknown}; expected {sorted(known)}")
        _check(data, where)
        views = {}
        for name, v in (data.get("views") or {}).items():
            views[name] = View(frame=v["frame"], saliency=v["saliency"], fixations=v.get("fixations", []),
                               saliency_path=_inside(root, v["saliency"], where, f"views.{name}.saliency"))
        values = {k: v for k, v in data.items() if k in known and k != "views" and (v is not None or k == "categories")}
        return cls(**values, views=views, video_path=_inside(root, data["video"], where, "video"))

    @property
    def labelled(self) -> bool:
        """Whether the record's distortion categories are known."""
        return self.categories is not None


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, object) of a JSON-lines file; blank lines skipped, errors name file, line and field."""
    path = Path(path)
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
            for key in required:
                if key not in record:
                    raise ValueError(f"{path}, line {line}: missing field {key!r}")
            yield line, record


def load_manifest(path: str | Path) -> list[Record]:
    """The records of a manifest, each checked (errors name the file, line and field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest")
    root = path.parent.resolve()
    return [Record.from_json(data, root, f"{path}, line {line}") for line, data in read_jsonl(path)]


def write_manifest(path: str | Path, records: list[Record]) -> Path:
    path = Path(path)
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r.to_json()) + "\n")
    return path


def check_fold(records: list[Record], fold: int, manifest) -> None:
    """``fold`` must be -1 (none held out) or one of the manifest's folds: a typo would
    otherwise hold out nothing (training) or test on nothing (evaluation)."""
    folds = sorted({r.fold for r in records})
    if fold != -1 and fold not in folds:
        raise ValueError(f"{manifest}: no record in fold {fold}; its folds are {folds} (-1: use every record)")


def held_out(records: list[Record], manifest, fold: int = -1, split: str | None = None) -> list[bool]:
    """Per record, whether it is held out: in ``fold`` (-1: none), or in the official ``split``
    (e.g. "eval": train on the others). Both at once is an error, and so is a fold or split the
    manifest does not have (a typo would hold out nothing, or test on nothing)."""
    if split is not None:
        if fold != -1:
            raise ValueError(f"hold out a fold or a split, not both (fold {fold}, split {split!r})")
        splits = sorted({r.split for r in records if r.split is not None})
        if split not in splits:
            raise ValueError(f"{manifest}: no record in split {split!r}; its splits are {splits or 'none'}")
        return [r.split == split for r in records]
    check_fold(records, fold, manifest)
    return [r.fold == fold for r in records]


def check_disjoint(study: str | Path, study_records: list[Record], others: dict[str, list[Record]]) -> None:
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


def check_same_study(study: str | Path, study_records: list[Record], render: str | Path,
                     render_records: list[Record]) -> None:
    """Refuse a ``render`` manifest that is not another render of ``study``'s heads, with a
    ``ValueError`` naming both: each of its records must be one of ``study``'s videos (same id) in the
    same fold, split and generator, and two synthetic studies must share their `lmmeval synth` seed.
    Then a head's renders are held out together, and none of them can leak into training."""
    seeds = synth_seed(study), synth_seed(render)
    if None not in seeds and seeds[0] != seeds[1]:
        raise ValueError(f"{render} was rendered with `lmmeval synth --seed {seeds[1]}`, {study} with --seed "
                         f"{seeds[0]} (their summary.json): other heads, not another render of the same ones")
    heads = {r.id: r for r in study_records}
    for record in render_records:
        head = heads.get(record.id)
        if head is None:
            raise ValueError(f"{render}: video {record.id!r} is not in {study}; a render of the same study "
                             "has the same video ids")
        for name in ("fold", "split", "generator"):
            if getattr(record, name) != getattr(head, name):
                raise ValueError(f"{render}: video {record.id!r} has {name} {getattr(record, name)!r}, in {study} "
                                 f"{getattr(head, name)!r}; prepare both renders with the same --folds and --seed")


def synth_seed(manifest: str | Path) -> int | None:
    """The `lmmeval synth` seed recorded in the prepared study's summary.json (None: not recorded,
    e.g. a real study or one prepared before the seed was recorded)."""
    return (synth_settings(manifest) or {}).get("seed")


def synth_settings(manifest: str | Path) -> dict | None:
    """The `lmmeval synth` settings (n, seed, size, fps, ...) recorded in the prepared study's
    summary.json (None: not recorded, e.g. a real study)."""
    summary = Path(manifest).parent / "summary.json"
    if not summary.is_file():
        return None
    try:
        settings = json.loads(summary.read_text()).get("synth")
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"{summary}: not the JSON object `lmmeval prepare` writes; prepare the study again") from None
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"{summary}: 'synth' is not the settings object `lmmeval prepare` writes")
    return settings


def _digests(records: list[Record]) -> dict[str, str]:
    """SHA-1 of each video file -> its path."""
    return {hashlib.sha1(r.video_path.read_bytes()).hexdigest(): str(r.video_path) for r in records}


def _check(record: dict, where: str) -> None:
    """The fields training and evaluation read, checked once here so a hand-edited manifest fails
    with its line and field rather than deep in a training step."""
    def bad(name: str, expected: str):
        raise ValueError(f"{where}: field {name!r} must be {expected}, got {_value(record, name)!r}")

    if not isinstance(record["id"], str) or not record["id"]:
        bad("id", "a non-empty string")
    if not isinstance(record["video"], str):
        bad("video", "a path relative to the manifest's folder")
    for dim in DIMENSIONS:
        mos = record["mos"].get(dim) if isinstance(record["mos"], dict) else None
        # Finite, not clipped to SCORE_RANGE: rescaled Z-scores (Eq. 3) can fall slightly outside.
        if isinstance(mos, bool) or not isinstance(mos, (int, float)) or not np.isfinite(mos):
            bad(f"mos.{dim}", "a finite number")
        if (record["level"].get(dim) if isinstance(record["level"], dict) else None) not in LEVELS:
            bad(f"level.{dim}", f"one of {list(LEVELS)}")
    if isinstance(record["fold"], bool) or not isinstance(record["fold"], int):
        bad("fold", "an integer")
    if record["categories"] is not None:  # null: not labelled
        if not isinstance(record["categories"], list):
            bad("categories", "a list of distortion names, or null (not labelled)")
        unknown = [c for c in record["categories"] if c not in DISTORTIONS]
        if unknown:
            raise ValueError(f"{where}: field 'categories': unknown names {unknown}")
    for name in ("generator", "split"):
        if record.get(name) is not None and not isinstance(record[name], str):
            bad(name, "a string")
    for name in ("num_frames", "fps", "width", "height"):
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            bad(name, "a positive number")
    views = record.get("views") or {}
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


def _inside(root: Path, rel: str, where: str, name: str) -> Path:
    # Lexically ("../" is resolved, symbolic links are not): a manifest may link to its videos
    # (`lmmeval import-gen3dhf` does by default), but its paths may not climb out of its folder.
    target = Path(os.path.normpath(root / rel))
    if Path(rel).is_absolute() or not target.is_relative_to(root):
        raise ValueError(f"{where}: field {name!r} = {rel!r} points outside the manifest's folder")
    return target
