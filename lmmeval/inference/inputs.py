"""Which files `lmmeval score` reads, and the id (and so the output names) each one gets.

Folders are searched recursively for video, image and 3D-mesh files. What lmmeval itself wrote
there is not an input: the ``_views.png`` strip beside a rendered video, a render cache, heat maps,
overlays and masks of an earlier run; nor is a texture a mesh among the inputs uses. Those are
skipped, and counted, so the summary can say what was left out and why. ``--include`` and
``--exclude`` globs narrow the set further. A file named on the command line is always an input
(a missing one is an error before anything loads).

Each input's id is its path below the folder argument it was found in (else its file name);
where two inputs would get the same id (``d1/x.png`` and ``d2/x.png`` given as files), both are
named by their path below the folder they share, so every output name derived from an id is unique.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..io.media import MEDIA_SUFFIXES
from ..render.assets import MESH_SUFFIXES

# A file in each folder `lmmeval score` renders meshes into: what lies below it is a cache, not input.
RENDER_CACHE_MARKER = ".lmmeval-render-cache"
# The names of what `lmmeval score` and `lmmeval render` write beside or below an input's id
# (lmmeval.inference.writers, lmmeval.render): never inputs themselves.
SALIENCY_SUFFIX = ".saliency.png"
OVERLAY_SUFFIXES = (".overlay.gif", ".overlay.png")
MASK_SUFFIX = ".mask"  # <id>.mask.png for an image, a <id>.mask/ folder of frames for a video
VIEWS_SUFFIX = "_views.png"  # lmmeval render: <stem>_views.png beside <stem>.mp4
# What lmmeval writes before renaming a file into place (lmmeval render: <name>.partial.mp4): a process
# killed before the rename leaves it, and it is never a finished input.
PARTIAL_MARK = ".partial."


@dataclass
class InputSet:
    """The files of a run, in order, each with its unique id, and what the search left out."""

    files: list[Path]
    ids: dict[Path, str]
    skipped: Counter = field(default_factory=Counter)  # reason -> number of files

    def skipped_note(self) -> str | None:
        """One line saying what was left out (None: nothing)."""
        if not self.skipped:
            return None
        parts = [f"{n} {reason}" for reason, n in sorted(self.skipped.items())]
        return f"skipped {sum(self.skipped.values())} file(s) found in the folders: {'; '.join(parts)}"


def collect_inputs(paths: list[str | Path], include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
                   ignore: tuple[str | Path, ...] = ()) -> InputSet:
    """The inputs of ``paths`` (files, or folders searched recursively), see the module docstring.

    ``include``/``exclude``: glob patterns matched against an input's path below its folder argument
    and against its file name (an input is kept if it matches some include, when any is given, and
    no exclude). ``ignore``: folders whose files are never inputs (a run's own output folders).
    A path that does not exist is a ``FileNotFoundError``."""
    ignored = [Path(p).resolve() for p in ignore]
    skipped: Counter = Counter()
    found: list[tuple[Path, Path | None]] = []  # (file, the folder argument it was found in)
    for p in map(Path, paths):
        if p.is_dir():
            found += [(f, p) for f in _search(p, ignored, skipped)]
        elif p.exists():
            found.append((p, None))  # named on the command line: an input whatever its type
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    # Textures of the meshes among the inputs are part of those meshes, not faces to score.
    textures = _referenced_files([f for f, _ in found if f.suffix.lower() in MESH_SUFFIXES])
    files, roots, seen = [], {}, set()
    for f, root in found:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        if root is not None and key in textures:
            skipped["textures of meshes among the inputs"] += 1
            continue
        rel = _relative(f, root)
        if not _selected(rel, include, exclude):
            skipped["left out by --include/--exclude"] += 1
            continue
        files.append(f)
        roots[f] = rel
    return InputSet(files=files, ids=_unique_ids(files, roots), skipped=skipped)


def _search(folder: Path, ignored: list[Path], skipped: Counter) -> list[Path]:
    """The input files below ``folder`` (sorted), counting what lmmeval wrote there in ``skipped``."""
    suffixes = MEDIA_SUFFIXES + MESH_SUFFIXES
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if RENDER_CACHE_MARKER in filenames:
            skipped["in render caches"] += sum(Path(n).suffix.lower() in suffixes for n in filenames)
            dirnames.clear()
            continue
        if here.resolve() in ignored or here.name.endswith(MASK_SUFFIX):
            skipped["outputs of this or an earlier run"] += sum(Path(n).suffix.lower() in suffixes for n in filenames)
            dirnames.clear()
            continue
        dirnames.sort()
        names = set(filenames)
        for name in sorted(filenames):
            if Path(name).suffix.lower() not in suffixes:
                continue
            if PARTIAL_MARK in name:
                skipped["unfinished files of interrupted runs"] += 1
            elif name.endswith((SALIENCY_SUFFIX, *OVERLAY_SUFFIXES, MASK_SUFFIX + ".png")):
                skipped["heat maps, overlays and masks of earlier runs"] += 1
            elif name.endswith(VIEWS_SUFFIX) and name[: -len(VIEWS_SUFFIX)] + ".mp4" in names:
                skipped["view strips beside rendered videos"] += 1
            else:
                out.append(here / name)
    return out


def _referenced_files(meshes: list[Path]) -> set[Path]:
    if not meshes:
        return set()
    from ..render.assets import referenced_files

    return {r.resolve() for mesh in meshes for r in referenced_files(mesh)}


def _relative(f: Path, root: Path | None) -> str:
    if root is None:
        return f.name
    return f.resolve().relative_to(root.resolve()).as_posix()


def _selected(rel: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]

    def matches(patterns) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)

    return (not include or matches(include)) and not matches(exclude)


def _unique_ids(files: list[Path], rel: dict[Path, str]) -> dict[Path, str]:
    """``rel`` where it is unique; inputs that share one are named by their path below the
    folder they have in common."""
    counts = Counter(rel.values())
    clashing = [f for f in files if counts[rel[f]] > 1]
    ids = dict(rel)
    if clashing:
        common = Path(os.path.commonpath([str(f.resolve().parent) for f in clashing]))
        for f in clashing:
            ids[f] = f.resolve().relative_to(common).as_posix()
    # Should a renamed id now equal another input's (rare), the later one takes a numbered suffix.
    taken: set[str] = set()
    for f in files:
        base, n = ids[f], 1
        while ids[f] in taken:
            n += 1
            ids[f] = f"{base}~{n}"
        taken.add(ids[f])
    return {f: ids[f] for f in files}
