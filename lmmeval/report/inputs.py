"""What a report reads: results files of `lmmeval score`, and the group (and MOS) of each input.

A results file is read whole and checked line by line; any line that is not a result row is an
error naming the file and line (the report would otherwise silently leave an input out).

Rows are matched to a manifest's records (or to the lines of a groups CSV) by, in turn:

1. the input's resolved path (a manifest's video, a CSV line's path);
2. the same file under another name: `lmmeval prepare` hard-links the videos it was given into
   its folder, so a study scored from its raw folder matches its prepared manifest;
3. the input's id (its path below the folder that was scored, e.g. ``g01_0000.mp4``);
4. that id without its media suffix (``g01_0000``: a manifest's id, a generators.csv's video).

An id that names two records matches none of them (it is ambiguous); a row that nothing matches
is an error naming its file and line, and so is a manifest or CSV that matches no row at all.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data.manifest import load_manifest, read_jsonl
from ..io.media import MEDIA_SUFFIXES
from ..labels import DIMENSIONS, DISTORTIONS

HINT = "expected the JSON lines that `lmmeval score --out` writes"


@dataclass
class ResultsFile:
    """The rows of one results file, each with its line number (for error messages)."""

    path: Path
    label: str  # a short name, unique among the report's results files
    rows: list[dict]
    lines: list[int]

    def where(self, i: int) -> str:
        return f"{self.path}, line {self.lines[i]}"


def load_results(path: str | Path, label: str | None = None) -> ResultsFile:
    """Read and check a results file of `lmmeval score` (``ValueError`` naming file and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    rows, lines, seen = [], [], {}
    try:
        for line, row in read_jsonl(path):
            _check_row(row, f"{path}, line {line}")
            if row["id"] in seen:
                raise ValueError(f"{path}, line {line}: input {row['id']!r} again (first on line {seen[row['id']]}); "
                                 "a results file has one row per input")
            seen[row["id"]] = line
            rows.append(row)
            lines.append(line)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; {HINT}") from None
    except ValueError as err:
        if "not valid JSON" in str(err) or "expected a JSON object" in str(err):
            raise ValueError(f"{err}; {HINT}") from None
        raise
    if not rows:
        raise ValueError(f"{path}: no result rows (an empty file); {HINT}")
    return ResultsFile(path=path, label=label or path.stem, rows=rows, lines=lines)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_row(row: dict, where: str) -> None:
    """The fields a report reads, checked once so that a hand-edited file fails with its line."""
    for key in ("id", "path"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {row.get(key)!r}; {HINT}")
    error = row.get("error")
    if error is not None and not isinstance(error, str):
        raise ValueError(f"{where}: field 'error' must be null or a message, got {error!r}")
    if error is None:
        for dim in DIMENSIONS:
            if not _is_number(row.get(dim)):
                raise ValueError(f"{where}: field {dim!r} must be a finite number (the row has no error), "
                                 f"got {row.get(dim)!r}")
    for key in ("out_of_distribution", "low_confidence"):
        if row.get(key) is not None and not isinstance(row[key], bool):
            raise ValueError(f"{where}: field {key!r} must be true, false or null, got {row[key]!r}")
    distortions = row.get("distortions")
    if distortions is not None:
        if not isinstance(distortions, list):
            raise ValueError(f"{where}: field 'distortions' must be a list of category names, got {distortions!r}")
        unknown = [d for d in distortions if d not in DISTORTIONS]
        if unknown:
            raise ValueError(f"{where}: field 'distortions': unknown categories {unknown}; expected names of "
                             f"lmmeval.labels.DISTORTIONS")


def unique_labels(paths: list[Path]) -> list[str]:
    """Short names for results files: their stems, with as many parent folders as it takes to tell
    them apart (``a/results`` and ``b/results``)."""
    paths = [Path(p).resolve() for p in paths]
    if len(set(paths)) < len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise ValueError(f"{twice} is given twice")
    depth = 1
    while True:
        labels = ["/".join([*p.parts[-depth:-1], p.stem]) for p in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(p.parts) for p in paths):
            return labels
        depth += 1


# ---------------------------------------------------------------------------------------
# Matching rows to records
# ---------------------------------------------------------------------------------------

@dataclass
class Matcher:
    """Finds the entry of a row among keyed entries (manifest records, groups-CSV lines)."""

    source: Path  # the manifest or CSV, for messages
    by_path: dict[Path, int] = field(default_factory=dict)
    by_id: dict[str, int] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)
    _by_inode: dict[tuple[int, int], int] | None = None

    def add(self, index: int, path: Path | None, key_id: str | None) -> None:
        if path is not None:
            self.by_path.setdefault(path.resolve(), index)
        if key_id is not None:
            if key_id in self.by_id and self.by_id[key_id] != index:
                self.ambiguous.add(key_id)
            self.by_id.setdefault(key_id, index)

    def _inode(self, path: Path) -> int | None:
        if self._by_inode is None:  # built on first need: one stat per entry
            self._by_inode = {}
            for p, index in self.by_path.items():
                try:
                    st = p.stat()
                except OSError:
                    continue
                self._by_inode.setdefault((st.st_dev, st.st_ino), index)
        try:
            st = path.stat()
        except OSError:
            return None
        return self._by_inode.get((st.st_dev, st.st_ino))

    def match(self, row: dict) -> int | None:
        path = Path(row["path"]).resolve()
        if path in self.by_path:
            return self.by_path[path]
        index = self._inode(path)
        if index is not None:
            return index
        for key in (row["id"], _without_media_suffix(row["id"])):
            if key in self.by_id and key not in self.ambiguous:
                return self.by_id[key]
        return None


def _without_media_suffix(name: str) -> str:
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in MEDIA_SUFFIXES else name


@dataclass
class Annotation:
    """What the report knows of an input beyond its scores."""

    record: str  # the manifest record's id
    group: str | None = None
    mos: dict[str, float] | None = None  # per dimension
    categories: list[str] | None = None  # annotated; None: not labelled
    video: Path | None = None  # the manifest's video (for a thumbnail when the row's path is gone)


def manifest_annotations(manifest: str | Path, files: list[ResultsFile]) -> tuple[list[list[Annotation]], bool]:
    """Per results file, per row: its record's generator, MOS and categories; and whether the
    manifest has generators at all (when none of its records has one, it gives MOS only)."""
    manifest = Path(manifest)
    records = load_manifest(manifest)
    if not records:
        raise ValueError(f"{manifest}: no records")
    matcher = Matcher(manifest)
    for i, r in enumerate(records):
        matcher.add(i, r.video_path, r.id)
    has_groups = any(r.generator is not None for r in records)
    found = _match_all(matcher, files, f"record of {manifest}", "its MOS and generator are unknown")
    out = []
    for f, indices in zip(files, found):
        annotations = []
        for i, index in enumerate(indices):
            r = records[index]
            if has_groups and r.generator is None:
                raise ValueError(f"{f.where(i)}: input {f.rows[i]['id']!r} is record {r.id!r} of {manifest}, which "
                                 "has no generator: its group is unknown (give --groups)")
            annotations.append(Annotation(record=r.id, group=r.generator, mos=dict(r.mos), categories=r.categories,
                                          video=r.video_path))
        out.append(annotations)
    return out, has_groups


def read_groups_csv(path: str | Path) -> tuple[Matcher, list[str]]:
    """A CSV of ``input,group`` lines under a header line (any column names, e.g. generators.csv's
    ``video,generator``): the input is a path (relative to the CSV's folder, or absolute) or an id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such groups CSV")
    matcher, groups, given = Matcher(path), [], {}
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or len(header) < 2:
                raise ValueError(f"{path}, line 1: expected a header line with two columns (input,group), "
                                 f"got {header!r}")
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{path}, line {line}: {len(row)} columns, the header has {len(header)}")
                key, group = row[0].strip(), row[1].strip()
                if not key or not group:
                    raise ValueError(f"{path}, line {line}: empty {'input' if not key else 'group'}")
                if key in given and groups[given[key]] != group:
                    raise ValueError(f"{path}, line {line}: {key!r} is put in group {group!r}, earlier in "
                                     f"{groups[given[key]]!r}")
                given[key] = len(groups)
                candidate = Path(key) if Path(key).is_absolute() else path.parent / key
                matcher.add(len(groups), candidate, key)
                groups.append(group)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file") from None
    except csv.Error as err:
        raise ValueError(f"{path}, line {reader.line_num}: not a CSV file ({err})") from None
    if not groups:
        raise ValueError(f"{path}: no input,group lines below the header")
    return matcher, groups


def csv_groups(path: str | Path, files: list[ResultsFile]) -> list[list[str]]:
    """Per results file, per row: its group from a groups CSV."""
    matcher, groups = read_groups_csv(path)
    return [[groups[i] for i in indices] for indices in _match_all(matcher, files, f"line of {path}",
                                                                    "its group is unknown")]


def _match_all(matcher: Matcher, files: list[ResultsFile], what: str, unknown: str) -> list[list[int]]:
    """The matched entry of every row; a source matching nothing, or a row matched by nothing, is an error."""
    found = [[matcher.match(row) for row in f.rows] for f in files]
    if all(index is None for indices in found for index in indices):
        names = ", ".join(str(f.path) for f in files)
        example = files[0].rows[0]
        raise ValueError(f"{matcher.source}: matches no row of {names} (by path, same file, or id; e.g. "
                         f"{example['id']!r} at {example['path']}): is it the study these inputs were scored from?")
    for f, indices in zip(files, found):
        for i, index in enumerate(indices):
            if index is None:
                row = f.rows[i]
                why = " (an id that names two of its entries)" if row["id"] in matcher.ambiguous else ""
                raise ValueError(f"{f.where(i)}: input {row['id']!r} ({row['path']}) has no {what}{why}: {unknown}")
    return found
