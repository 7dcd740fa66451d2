"""Batch scoring of files: what `lmmeval score` does, usable from Python too.

Results go to a JSON-lines file, one complete line per input, appended and flushed
as soon as the input is done, so an interrupted run loses at most the line being
written; ``resume=True`` drops such a torn last line and skips every input already
in the file. A failing input becomes a line with its ``error``; the run goes on.

Nothing a run writes may destroy data: an existing results file is continued (``resume``) or
replaced (``overwrite``) only when asked; no output (results, CSV, heat maps, overlays, masks,
render cache) may land on an input or on another output; all of this is checked by
``plan_scoring`` before a model loads, so a mistake costs seconds, not a model load.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..render.assets import MESH_SUFFIXES
from .inputs import (MASK_SUFFIX, OVERLAY_SUFFIXES, RENDER_CACHE_MARKER, SALIENCY_SUFFIX, InputSet,
                     collect_inputs)

# Every result row starts with its id (Assessment.to_dict comes after it): a torn last line that
# does not start so is not a torn result row, and the file is not a results file.
ROW_PREFIX = b'{"id": '
SHOWN_ERRORS = 5  # per-input errors printed by the summary; the rest are counted


# ---------------------------------------------------------------------------------------
# The results file
# ---------------------------------------------------------------------------------------

def read_rows(out_path: Path) -> dict[str, dict]:
    """The result rows of a results file, by input path; a torn last line (killed mid-write) is cut off.

    Any other line that is not a result row is an error naming the file and line: the file is
    left untouched rather than truncated there (it may be the wrong file). A last line without its
    newline is cut only if it begins as a result row does; otherwise the file is refused whole.
    """
    out_path = Path(out_path)
    if not out_path.exists():
        return {}
    data = out_path.read_bytes()
    rows, keep = parse_rows(data, out_path)
    if keep != len(data):
        with open(out_path, "r+b") as f:
            f.truncate(keep)
    return rows


def parse_rows(data: bytes, source: Path) -> tuple[dict[str, dict], int]:
    """(rows by path, bytes of complete rows) of a results file's content; see ``read_rows``."""
    rows, keep = {}, 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            if not (line.startswith(ROW_PREFIX) or ROW_PREFIX.startswith(line)):
                raise ValueError(f"{source}:{number}: not a result row of lmmeval score (and no complete "
                                 "line); refusing to resume into this file")
            break  # torn: the writer died before the newline
        try:
            row = json.loads(line)
            rows[row["path"]] = row
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError(f"{source}:{number}: not a result row of lmmeval score; refusing to resume "
                             "into this file") from None
        keep += len(line)
    return rows, keep


def resume_rows(out_path: Path, keep_failed: bool = False, paths: set[str] | None = None) -> tuple[dict[str, dict], int]:
    """(rows kept, failed rows dropped) of an interrupted or finished run's results file.

    Failed rows are taken out of the file (rewritten whole, then renamed over it) so that their
    inputs are scored again, unless ``keep_failed``; with ``paths`` (the run's resolved inputs) only
    theirs: another path's row is not this run's to drop. A torn last line is cut off."""
    rows = read_rows(out_path)
    failed = [p for p, r in rows.items() if r.get("error") is not None and (paths is None or p in paths)]
    if keep_failed or not failed:
        return rows, 0
    kept = {p: r for p, r in rows.items() if p not in failed}
    _write_atomic(out_path, "".join(json.dumps(r) + "\n" for r in kept.values()))
    return kept, len(failed)


class FileCounts(NamedTuple):
    results: int
    failed: int
    low_confidence: int
    out_of_distribution: int
    ood_checked: int


def file_counts(out_path: Path, paths: set[str] | None = None) -> FileCounts:
    """Rows, failed rows, low-confidence rows, out-of-distribution rows and rows checked for it, of a
    complete results file; only the rows of ``paths`` (resolved input paths) when given."""
    rows = [r for p, r in read_rows(out_path).items() if paths is None or p in paths]
    return FileCounts(len(rows), sum(r.get("error") is not None for r in rows),
                      sum(bool(r.get("low_confidence")) for r in rows),
                      sum(bool(r.get("out_of_distribution")) for r in rows),
                      sum(r.get("out_of_distribution") is not None for r in rows))


@dataclass
class ScoreSummary:
    """A run, and the results file it leaves. The counts of the file (``results``, ``failed``,
    ``low_confidence``) cover every row of this run's inputs in it, earlier runs' included: what the
    exit status reports. Rows of other paths (``foreign``) stay in the file and are not counted."""

    total: int  # inputs of this run
    kept: int  # rows kept from an earlier run (resume)
    retried: int  # earlier failures scored again (resume)
    scored_now: int  # inputs this run scored (or failed on)
    results: int  # rows of this run's inputs in the results file
    failed: int  # of them, rows with an error
    low_confidence: int = 0  # rows flagged as uncertain
    out_of_distribution: int = 0  # rows flagged as unlike the checkpoint's training inputs
    ood_checked: int = 0  # rows with an out-of-distribution verdict (the checkpoint has the statistics)
    foreign: int = 0  # rows for paths that are not among this run's inputs (resume): left, not counted
    skipped: Counter = field(default_factory=Counter)  # files the folder search left out, by reason
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, error) of the first failed rows

    @property
    def scored(self) -> int:
        """Rows of this run's inputs that hold scores (not errors)."""
        return self.results - self.failed


# ---------------------------------------------------------------------------------------
# Checking a run before it starts
# ---------------------------------------------------------------------------------------

@dataclass
class ScoringPlan:
    """A checked run: its inputs and where every output goes (``plan_scoring``)."""

    inputs: InputSet
    out_path: Path
    csv_path: Path | None = None
    saliency_dir: Path | None = None
    overlay: bool = False
    masks_dir: Path | None = None
    render_cache: Path | None = None
    resume: bool = False
    overwrite: bool = False
    keep_failed: bool = False

    @property
    def wants_maps(self) -> bool:
        return self.saliency_dir is not None or self.masks_dir is not None

    def saliency_stem(self, input_id: str) -> Path:
        return self.saliency_dir / input_id

    def mask_stem(self, input_id: str) -> Path:
        return self.masks_dir / input_id


def plan_scoring(inputs: list[str | Path], out_path: str | Path, csv_path: str | Path | None = None,
                 saliency_dir: str | Path | None = None, overlay: bool = False, masks_dir: str | Path | None = None,
                 render_cache: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                 keep_failed: bool = False, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> ScoringPlan:
    """Collect the inputs and check every output path, before anything is written or loaded.

    Raises ``ValueError`` (or ``FileNotFoundError`` for a missing input) naming the problem: an
    existing results file without ``resume`` or ``overwrite``; an output that is an input or another
    output, or that would replace an earlier run's file; an empty input set; a folder that cannot
    be written."""
    if resume and overwrite:
        raise ValueError("--resume continues the results file and --overwrite replaces it: give one")
    if overlay and saliency_dir is None:
        raise ValueError("--overlay needs --saliency-dir (where the overlays go)")
    out_path = Path(out_path)
    csv_path = Path(csv_path) if csv_path is not None else None
    saliency_dir = Path(saliency_dir) if saliency_dir is not None else None
    masks_dir = Path(masks_dir) if masks_dir is not None else None
    render_cache = Path(render_cache) if render_cache is not None else out_path.with_name(out_path.name + ".renders")
    if out_path.is_dir():
        raise ValueError(f"--out {out_path} is a folder; give the results file's path (e.g. {out_path}/results.jsonl)")
    found = collect_inputs(inputs, include, exclude,
                           ignore=tuple(d for d in (saliency_dir, masks_dir, render_cache) if d is not None))
    if not found.files:
        note = found.skipped_note()
        raise ValueError(f"no inputs to score in {', '.join(map(str, inputs))}: no video, image or 3D mesh file"
                         + (f" ({note})" if note else ""))
    plan = ScoringPlan(found, out_path, csv_path, saliency_dir, overlay, masks_dir, render_cache, resume, overwrite,
                       keep_failed)
    _check_outputs(plan)
    if out_path.is_file() and resume:
        parse_rows(out_path.read_bytes(), out_path)  # the wrong file is refused now, not after the model loads
    return plan


def _check_outputs(plan: ScoringPlan) -> None:
    inputs = {f.resolve(): f for f in plan.inputs.files}
    outputs: dict[Path, str] = {}  # resolved path -> what it is, to find clashes

    def claim(path: Path, what: str, earlier_ok: bool) -> None:
        key = path.resolve()
        if key in inputs:
            raise ValueError(f"{what} {path} is one of the inputs: it would be overwritten; write it elsewhere")
        if key in outputs:
            raise ValueError(f"{what} and {outputs[key]} are the same file ({path}): give them different paths")
        if path.exists() and not earlier_ok:
            raise ValueError(f"{what} {path} exists (an earlier run's {'results' if what == '--out' else 'output'}?): "
                             "--resume continues it, --overwrite replaces it")
        outputs[key] = f"{what} {path}"

    claim(plan.out_path, "--out", earlier_ok=plan.resume or plan.overwrite)
    if plan.csv_path is not None:
        # The CSV is a view of the results file: a resumed run brings it up to date.
        claim(plan.csv_path, "--csv", earlier_ok=plan.resume or plan.overwrite)
    may_replace = plan.resume or plan.overwrite
    for f in plan.inputs.files:
        input_id = plan.inputs.ids[f]
        if plan.saliency_dir is not None:
            stem = plan.saliency_stem(input_id)
            claim(stem.with_name(stem.name + SALIENCY_SUFFIX), "heat map", may_replace)
            if plan.overlay:
                for suffix in OVERLAY_SUFFIXES:
                    claim(stem.with_name(stem.name + suffix), "overlay", may_replace)
        if plan.masks_dir is not None:
            stem = plan.mask_stem(input_id)
            claim(stem.with_name(stem.name + MASK_SUFFIX + ".png"), "mask", may_replace)
            claim(stem.with_name(stem.name + MASK_SUFFIX), "mask folder", may_replace)
    if any(f.suffix.lower() in MESH_SUFFIXES for f in plan.inputs.files):
        cache = plan.render_cache
        if cache.exists() and not (cache / RENDER_CACHE_MARKER).is_file() and any(cache.iterdir()):
            raise ValueError(f"--render-cache {cache} holds files that lmmeval did not render there: give an empty "
                             "or new folder")
        for f in plan.inputs.files:
            if f.resolve().is_relative_to(cache.resolve()):
                raise ValueError(f"input {f} lies inside the render cache {cache}")
    folders = {plan.out_path.parent, *(p.parent for p in [plan.csv_path] if p is not None),
               *(d for d in (plan.saliency_dir, plan.masks_dir) if d is not None)}
    for folder in sorted(folders):
        _writable_folder(folder)


def _writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed and check it can be written, with a clear error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the output folder {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into the output folder {folder}: permission denied")


def check_options(batch_size: int, masks_dir, mask_threshold: float, mask_dilate: int) -> None:
    """The options' errors, before anything is written or a model loads (not once per row afterwards)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if masks_dir is not None and not (0 <= mask_threshold <= 1 and mask_dilate >= 0):
        raise ValueError(f"mask threshold must be in [0, 1] and dilate >= 0, got {mask_threshold}, {mask_dilate}")


# ---------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------

def score_files(assessor, inputs: list[str | Path], out_path: str | Path, batch_size: int = 4,
                resume: bool = False, overwrite: bool = False, csv_path: str | Path | None = None,
                saliency_dir: str | Path | None = None, overlay: bool = False, masks_dir: str | Path | None = None,
                mask_threshold: float = 0.5, mask_dilate: int = 3, low_confidence_entropy: float = 1.2,
                progress: bool = True, workers: int = 0, keep_failed: bool = False, render=None,
                render_cache: str | Path | None = None, include: tuple[str, ...] = (),
                exclude: tuple[str, ...] = (), keep_renders: bool = False) -> ScoreSummary:
    """Score ``inputs`` (files or folders) into ``out_path`` (JSON lines); see module docstring.

    With ``resume``, inputs already in the file are skipped, except those that failed, which are
    scored again (``keep_failed``: skipped too); ``overwrite`` replaces an existing file instead.
    3D meshes among the inputs are scored as their video in the Gen3DHF protocol (``render``: a
    ``lmmeval.render.RenderConfig``, default the paper's) would be: only the frames the model reads
    of it are rendered, at about the size it reads them (``lmmeval.render.sampled``); the row keeps
    the mesh's path and notes what was rendered. ``keep_renders`` renders the whole video into
    ``render_cache`` instead (default ``<out>.renders/``; a video is reused only for the same mesh
    content, settings and renderer) and scores it.
    """
    check_options(batch_size, masks_dir, mask_threshold, mask_dilate)
    plan = plan_scoring(inputs, out_path, csv_path, saliency_dir, overlay, masks_dir, render_cache, resume,
                        overwrite, keep_failed, include, exclude)
    return run_plan(assessor, plan, batch_size=batch_size, mask_threshold=mask_threshold, mask_dilate=mask_dilate,
                    low_confidence_entropy=low_confidence_entropy, progress=progress, workers=workers, render=render,
                    keep_renders=keep_renders)


def run_plan(assessor, plan: ScoringPlan, batch_size: int = 4, mask_threshold: float = 0.5, mask_dilate: int = 3,
             low_confidence_entropy: float = 1.2, progress: bool = True, workers: int = 0, render=None,
             files: list[Path] | None = None, out_path: Path | None = None,
             also_done: frozenset[str] = frozenset(), keep_renders: bool = False) -> ScoreSummary:
    """Score a checked plan. ``files`` (a shard of ``plan.inputs.files``) and ``out_path`` (its own
    results file) are how distributed scoring runs one rank's share; ``also_done`` are paths
    finished elsewhere (skipped on resume). ``keep_renders``: see ``score_files``."""
    files = plan.inputs.files if files is None else files
    out_path = plan.out_path if out_path is None else out_path
    wanted = {str(f.resolve()) for f in plan.inputs.files}
    kept, retried = resume_rows(out_path, plan.keep_failed, wanted) if plan.resume else ({}, 0)
    foreign = sum(p not in wanted for p in kept)
    done = (set(kept) | set(also_done)) if plan.resume else set()
    todo = [f for f in files if str(f.resolve()) not in done]
    meshes = [f for f in todo if f.suffix.lower() in MESH_SUFFIXES]
    # The renderer starts (and a forced variant that does not load stops the run) before --overwrite
    # removes anything.
    with _mesh_inputs(meshes, render, plan.render_cache, assessor, progress, keep_renders) as mesh_inputs:
        if plan.overwrite and out_path.exists():
            out_path.unlink()
        _score_into(assessor, plan, todo, mesh_inputs, out_path, batch_size, mask_threshold, mask_dilate,
                    low_confidence_entropy, progress, workers)
    if plan.csv_path is not None and out_path == plan.out_path:
        from .writers import write_csv

        write_csv(out_path, plan.csv_path, paths=wanted)
    return _summary(plan, out_path, len(files), len(todo), retried, foreign, wanted)


def _score_into(assessor, plan: ScoringPlan, todo: list[Path], meshes: dict, out_path: Path, batch_size: int,
                mask_threshold: float, mask_dilate: int, low_confidence_entropy: float, progress: bool,
                workers: int) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="scoring", unit="input", disable=not progress)
    with open(out_path, "a") as out:
        # A mesh is scored through what was rendered of it; one that could not be gets its error as the input's.
        items = [meshes[f].item if f in meshes and meshes[f].error is None else str(f) for f in todo]
        batches = assessor.assess_batches(items, batch_size, saliency=plan.wants_maps, on_error="return",
                                          workers=workers, keep_frames=plan.overlay)
        for start, results in zip(range(0, len(todo), batch_size), batches):
            chunk = todo[start:start + batch_size]
            for f, r in zip(chunk, results):
                row = _row(plan, f, r, meshes.get(f), mask_threshold, mask_dilate, low_confidence_entropy)
                out.write(_row_json(row) + "\n")  # one complete line at a time
                out.flush()
                os.fsync(out.fileno())
            bar.update(len(chunk))
    bar.close()


def _row(plan: ScoringPlan, f: Path, r, mesh, mask_threshold: float, mask_dilate: int,
         low_confidence_entropy: float) -> dict:
    """The result row of input ``f`` (its Assessment ``r``; ``mesh``: its ``_MeshInput`` if it is a
    mesh), with the files written for it."""
    from .writers import write_masks, write_overlay, write_saliency_png

    if mesh is not None:  # the row is the mesh's, its rendering noted (or its failure)
        r.source = str(f)
        if mesh.error is not None:
            r.error = mesh.error
        elif r.ok:
            r.notes = [*mesh.notes, *r.notes]
    input_id = plan.inputs.ids[f]
    row = {"id": input_id, **r.to_dict(), "path": str(f.resolve())}
    if r.ok:
        # Low confidence: the level distribution of some dimension is too flat.
        row["low_confidence"] = any(u["entropy"] > low_confidence_entropy for u in r.uncertainty.values())
    if r.ok and plan.wants_maps:
        try:
            if plan.saliency_dir is not None:
                stem = plan.saliency_stem(input_id)
                write_saliency_png(stem.with_name(stem.name + SALIENCY_SUFFIX), r)
                if plan.overlay:
                    row["overlay"] = str(write_overlay(stem.with_name(stem.name + ".overlay"), r))
            if plan.masks_dir is not None:
                mask_path, strength = write_masks(plan.mask_stem(input_id), r, mask_threshold, mask_dilate)
                row["mask"], row["refine_strength"] = str(mask_path), round(strength, 4)
        except (OSError, ValueError) as err:
            row["error"] = f"writing saliency outputs failed: {err}"
    return row


def _row_json(row: dict) -> str:
    """The row as one JSON line. JSON has no NaN or Infinity: a row holding one (a model that gives
    non-finite outputs) becomes that input's error rather than a line other readers reject."""
    try:
        return json.dumps(row, allow_nan=False)
    except ValueError:
        bad = sorted(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
        keep = {k: row[k] for k in ("id", "path", "notes", "runtime_s") if k in row}
        return json.dumps({**keep, "quality": None, "authenticity": None,
                           "error": f"the model gave non-finite outputs ({', '.join(bad) or 'nested values'})"})


def _summary(plan: ScoringPlan, out_path: Path, total: int, scored_now: int, retried: int, foreign: int,
             wanted: set[str]) -> ScoreSummary:
    rows = read_rows(out_path)
    ids = {str(f.resolve()): plan.inputs.ids[f] for f in plan.inputs.files}
    failures = [(ids[p], r["error"]) for p, r in rows.items() if p in wanted and r.get("error") is not None]
    return ScoreSummary(total=total, kept=total - scored_now, retried=retried, scored_now=scored_now,
                        **file_counts(out_path, wanted)._asdict(), foreign=foreign, skipped=plan.inputs.skipped,
                        failures=failures[:SHOWN_ERRORS])


@dataclass
class _MeshInput:
    """What the assessor reads for a mesh (its video's path, or a ``SampledVideo``), the notes its row
    gets, or why it could not be rendered."""

    item: object = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@contextlib.contextmanager
def _mesh_inputs(meshes: list[Path], config, cache: Path, assessor, progress: bool, keep_renders: bool):
    """{mesh: ``_MeshInput``} for the block. By default each is a ``SampledVideo`` rendered when the
    assessor loads it, by a render pool that lives as long as the block (one mesh's frames held at a
    time); with ``keep_renders`` the meshes' protocol videos are rendered into ``cache`` first."""
    if not meshes:
        yield {}
        return
    try:
        from ..render import RenderConfig

        import mitsuba  # noqa: F401  (the optional extra)
        import trimesh  # noqa: F401
    except ImportError:
        reason = "3D meshes are rendered before scoring, which needs pip install 'lmmeval[render]'"
        yield {f: _MeshInput(error=f"{f}: {reason}") for f in meshes}
        return
    config = config or RenderConfig()
    if keep_renders:
        yield {f: _MeshInput(error=r.error) if r.error else
               _MeshInput(str(r.video), [f"rendered to {r.video} by lmmeval render", *r.notes])
               for f, r in _render_meshes(meshes, config, cache, progress).items()}
        return
    with _sampled_meshes(meshes, config, assessor, progress) as inputs:
        yield inputs


@contextlib.contextmanager
def _sampled_meshes(meshes: list[Path], config, assessor, progress: bool):
    """``_mesh_inputs`` without ``keep_renders``: one progress bar over the frames of every mesh."""
    from ..render.pool import RenderError, RenderPool
    from ..render.sampled import describe, frames_to_render, sampled_video

    sampling, geometry = assessor.config.sampling, assessor.parts.geometry
    with RenderPool(config.workers, config.gpu) as pool:
        try:
            variant = pool.start()  # before any bar: the variant's note would cut its line
        except RenderError as err:
            yield {f: _MeshInput(error=f"{f}: rendering failed: {err}") for f in meshes}
            return
        note = describe(config, sampling, geometry, variant)
        bar = _FrameBar(len(meshes) * frames_to_render(config, sampling, geometry), progress)
        inputs = {}
        for n, f in enumerate(meshes, start=1):
            video = sampled_video(f, config, sampling, geometry, pool, progress=bar.update)
            video.load = bar.announcing(video.load, f"mesh {n}/{len(meshes)}: {f.name}")
            inputs[f] = _MeshInput(video, [note])
        try:
            yield inputs
        finally:
            bar.close()


class _FrameBar:
    """A progress bar over the frames of every mesh (rate and time left), opened as the first mesh
    starts rendering, so that its clock does not count what came before."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.bar = total, enabled, None

    def announcing(self, load, label: str):
        """``load``, naming on the bar the mesh it renders while it runs."""
        def announced():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, desc="rendering", unit="frame", disable=not self.enabled)
            self.bar.set_postfix_str(label)
            return load()
        return announced

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _render_meshes(meshes: list[Path], config, cache: Path, progress: bool) -> dict:
    """{mesh: its ``lmmeval.render.Rendered``} (with ``error`` set where it could not be rendered):
    every mesh's protocol video, rendered into ``cache`` (``--keep-renders``).

    Videos go to ``cache`` under a name that carries a key of the mesh's content (its files, the
    textures it references), of every render setting and of the renderer: a changed mesh, texture,
    setting or renderer is rendered again, never matched by its file name alone."""
    from ..render import Rendered, render_assets, render_key
    from ..render.pool import RenderError, RenderPool

    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / RENDER_CACHE_MARKER
    if not marker.exists():
        marker.write_text("Videos lmmeval score rendered from 3D meshes, named by a key of each mesh's content and "
                          "render settings; reused by later runs. Not inputs: folder scoring skips this folder.\n")
    with RenderPool(config.workers, config.gpu) as pool:
        try:
            variant = pool.start()  # the key names the renderer's family: its frames differ slightly
        except RenderError as err:
            return {f: Rendered(source=str(f), error=f"{f}: rendering failed: {err}") for f in meshes}
        names, unreadable = {}, {}
        for f in meshes:
            try:
                names[f] = f"{f.stem}-{render_key(f, config, variant)[:16]}"
            except OSError as err:  # gone or unreadable since it was collected: that mesh's error, not the run's
                unreadable[f] = Rendered(source=str(f), error=f"{f}: cannot read the mesh ({err.strerror or err})")
        readable = [f for f in meshes if f in names]
        results = (render_assets(readable, cache, config, resume=True, progress=progress, names=names, pool=pool)
                   if readable else [])
    return {**dict(zip(readable, results)), **unreadable}


def _write_atomic(path: Path, text: str) -> None:
    """``path`` holds the old text or the new, never half of it."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------
# Distributed
# ---------------------------------------------------------------------------------------

def distributed_rank() -> tuple[int, int] | None:
    """(rank, world size) under torchrun / the deepspeed launcher, None for a single process; a
    WORLD_SIZE without RANK (a stray variable) is a ``ValueError``."""
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        return None
    try:
        world_size = int(world)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={world!r} is not a number; unset it, or launch with torchrun") from None
    if world_size <= 1:
        return None
    if "RANK" not in os.environ:
        raise ValueError(f"WORLD_SIZE={world_size} is set but RANK is not: launch with torchrun (or the deepspeed "
                         "launcher), or unset WORLD_SIZE for a single process")
    return int(os.environ["RANK"]), world_size


def score_distributed(assessor_factory, plan: ScoringPlan, **kwargs) -> ScoreSummary:
    """`lmmeval score` under torchrun / the deepspeed launcher: inputs sharded by rank.

    Rank r scores every world-th input into ``<out>.rank<r>-of-<world>`` (resumable like a
    single run); after a barrier rank 0 merges the shards and anything already in ``out``
    into ``out`` (input order, each input once) and removes the shards. ``assessor_factory``
    builds the assessor for a device.
    """
    import torch
    import torch.distributed as dist

    rank, world = distributed_rank()
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    out_path = plan.out_path
    files = plan.inputs.files
    shard = out_path.with_name(f"{out_path.name}.rank{rank}-of-{world}")
    if not plan.resume:
        shard.unlink(missing_ok=True)  # a stale shard of an earlier run that never merged
    before = read_rows(out_path) if plan.resume and out_path.exists() else {}
    # Earlier failures in the merged file are scored again (their new rows replace them at the merge).
    merged_before = frozenset(p for p, r in before.items() if plan.keep_failed or r.get("error") is None)
    dist.barrier()  # nobody may touch the merged file before everyone has read it
    assessor = assessor_factory(f"cuda:{local}" if cuda else "cpu")
    shard_plan = ScoringPlan(**{**plan.__dict__, "overwrite": False})
    summary = run_plan(assessor, shard_plan, files=files[rank::world], out_path=shard, also_done=merged_before,
                       progress=kwargs.pop("progress", True) and rank == 0, **kwargs)
    counts = torch.tensor([summary.scored_now, summary.retried], dtype=torch.long)
    dist.all_reduce(counts)
    dist.barrier()
    if rank == 0:
        _merge(out_path, [out_path.with_name(f"{out_path.name}.rank{r}-of-{world}") for r in range(world)], files,
               keep_existing=not plan.overwrite)
        if plan.csv_path is not None:
            from .writers import write_csv

            write_csv(out_path, plan.csv_path, paths={str(f.resolve()) for f in files})
    dist.barrier()
    scored_now, retried = counts.tolist()
    wanted = {str(f.resolve()) for f in files}
    retried += sum(r.get("error") is not None for p, r in before.items() if p in wanted) if not plan.keep_failed else 0
    return _summary(plan, out_path, len(files), scored_now, retried, sum(p not in wanted for p in before), wanted)


def _merge(out_path: Path, shards: list[Path], files: list[Path], keep_existing: bool = True) -> None:
    """Complete lines of the shards and ``out_path``, each input once (a shard's row, the newer, wins),
    in input order."""
    rows: dict[str, str] = {}
    for part in [*shards, *([out_path] if keep_existing else [])]:
        if part.exists():
            read_rows(part)  # cuts a torn last line
            for line in part.read_text().splitlines():
                rows.setdefault(json.loads(line)["path"], line)
    order = {str(f.resolve()): i for i, f in enumerate(files)}
    _write_atomic(out_path, "".join(rows[p] + "\n" for p in sorted(rows, key=lambda p: order.get(p, len(order)))))
    for part in shards:
        part.unlink(missing_ok=True)
