"""Batch scoring of files: what `lmmeval score` does, usable from Python too.

Results go to a JSON-lines file, one complete line per input, appended and flushed
as soon as the input is done, so an interrupted run loses at most the line being
written; ``resume=True`` drops such a torn last line and skips every input already
in the file. A failing input becomes a line with its ``error``; the run goes on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..io.media import MEDIA_SUFFIXES
from ..render.assets import MESH_SUFFIXES
from .assessor import Assessor
from .writers import write_csv, write_masks, write_overlay, write_saliency_png


def collect_inputs(paths: list[str | Path]) -> list[Path]:
    """Files to score: given files as they are, folders recursed for video, image and 3D-mesh suffixes (sorted)."""
    suffixes = MEDIA_SUFFIXES + MESH_SUFFIXES
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes))
        else:
            found.append(p)  # a missing or odd file is reported as that input's error, not dropped
    seen, unique = set(), []
    for f in found:
        key = str(f.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def read_rows(out_path: Path) -> dict[str, dict]:
    """The result rows of a results file, by input path; a torn last line (killed mid-write) is cut off.

    Any other line that is not a result row is an error naming the file and line:
    the file is left untouched rather than truncated there (it may be the wrong file).
    """
    if not out_path.exists():
        return {}
    data = out_path.read_bytes()
    rows, keep = {}, 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            break  # torn: the writer died before the newline
        try:
            row = json.loads(line)
            rows[row["path"]] = row
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError(f"{out_path}:{number}: not a result row of lmmeval score; refusing to resume "
                             "into this file") from None
        keep += len(line)
    if keep != len(data):
        with open(out_path, "r+b") as f:
            f.truncate(keep)
    return rows


def resume_rows(out_path: Path, keep_failed: bool = False) -> tuple[dict[str, dict], int]:
    """(rows kept, failed rows dropped) of an interrupted or finished run's results file.

    Failed rows are taken out of the file (rewritten whole, then renamed over it) so that their
    inputs are scored again, unless ``keep_failed``. A torn last line is cut off."""
    rows = read_rows(out_path)
    failed = [p for p, r in rows.items() if r.get("error") is not None]
    if keep_failed or not failed:
        return rows, 0
    kept = {p: r for p, r in rows.items() if r.get("error") is None}
    tmp = out_path.with_name(out_path.name + ".resuming")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept.values()))
    tmp.replace(out_path)  # atomic: the file holds the old rows or the kept ones, never half of them
    return kept, len(failed)


@dataclass
class ScoreSummary:
    """A run, and the results file it leaves. The counts of the file (``results``, ``failed``,
    ``low_confidence``) cover every row in it, earlier runs' included: what the exit status reports."""

    total: int  # inputs of this run
    kept: int  # rows kept from an earlier run (resume)
    retried: int  # earlier failures scored again (resume)
    scored_now: int  # inputs this run scored (or failed on)
    results: int  # rows in the results file
    failed: int  # rows with an error in the results file
    low_confidence: int = 0  # rows flagged as uncertain in the results file
    out_of_distribution: int = 0  # rows flagged as unlike the checkpoint's training inputs
    ood_checked: int = 0  # rows with an out-of-distribution verdict (the checkpoint has the statistics)


class FileCounts(NamedTuple):
    results: int
    failed: int
    low_confidence: int
    out_of_distribution: int
    ood_checked: int


def file_counts(out_path: Path) -> FileCounts:
    """Rows, failed rows, low-confidence rows, out-of-distribution rows and rows checked for it, of a
    complete results file."""
    rows = read_rows(out_path).values()
    return FileCounts(len(rows), sum(r.get("error") is not None for r in rows),
                      sum(bool(r.get("low_confidence")) for r in rows),
                      sum(bool(r.get("out_of_distribution")) for r in rows),
                      sum(r.get("out_of_distribution") is not None for r in rows))


def check_options(batch_size: int, masks_dir, mask_threshold: float, mask_dilate: int) -> None:
    """The options' errors, before anything is written or a model loads (not once per row afterwards)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if masks_dir is not None and not (0 <= mask_threshold <= 1 and mask_dilate >= 0):
        raise ValueError(f"mask threshold must be in [0, 1] and dilate >= 0, got {mask_threshold}, {mask_dilate}")


def score_files(assessor: Assessor, inputs: list[str | Path], out_path: str | Path, batch_size: int = 4,
                resume: bool = False, csv_path: str | Path | None = None, saliency_dir: str | Path | None = None,
                overlay: bool = False, masks_dir: str | Path | None = None, mask_threshold: float = 0.5,
                mask_dilate: int = 3, low_confidence_entropy: float = 1.2, progress: bool = True,
                files: list[Path] | None = None, also_done: set[str] = frozenset(), workers: int = 0,
                keep_failed: bool = False, render=None, render_cache: str | Path | None = None) -> ScoreSummary:
    """Score ``inputs`` (files or folders) into ``out_path`` (JSON lines); see module docstring.

    With ``resume``, inputs already in the file are skipped, except those that failed, which are
    scored again (``keep_failed``: skipped too). 3D meshes among the inputs are first rendered in the
    Gen3DHF protocol (``render``: a ``lmmeval.render.RenderConfig``, default the paper's) into
    ``render_cache`` (default ``<out>.renders/``; finished videos are reused), and their videos
    scored: the row keeps the mesh's path and notes the video. ``files`` (a shard of ``collect_inputs(inputs)``)
    restricts the run to those files, with ids still relative to ``inputs``; ``also_done`` are paths
    finished elsewhere (skipped on resume).
    """
    from tqdm import tqdm

    check_options(batch_size, masks_dir, mask_threshold, mask_dilate)
    out_path = Path(out_path)
    files = collect_inputs(inputs) if files is None else files
    if not resume and out_path.exists():
        out_path.unlink()
    kept, retried = resume_rows(out_path, keep_failed) if resume else ({}, 0)
    done = set(kept) | set(also_done) if resume else set()
    todo = [f for f in files if str(f.resolve()) not in done]
    want_maps = saliency_dir is not None or masks_dir is not None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    videos = _render_meshes([f for f in todo if f.suffix.lower() in MESH_SUFFIXES], render,
                            Path(render_cache) if render_cache else out_path.with_name(out_path.name + ".renders"),
                            progress)
    bar = tqdm(total=len(todo), desc="scoring", unit="input", disable=not progress)
    with open(out_path, "a") as out:
        # Decoding of the next batches runs ahead in worker processes when workers > 0. A mesh is scored
        # through its video; one that could not be rendered gets its error as the input's (see below).
        items = [str(videos[f].video) if f in videos and videos[f].error is None else str(f) for f in todo]
        batches = assessor.assess_batches(items, batch_size, saliency=want_maps, on_error="return",
                                          workers=workers, keep_frames=overlay)
        for start, results in zip(range(0, len(todo), batch_size), batches):
            chunk = todo[start:start + batch_size]
            for f, r in zip(chunk, results):
                if f in videos:  # the row is the mesh's, its rendering noted (or its failure)
                    rendered = videos[f]
                    r.source = str(f)
                    if rendered.error is not None:
                        r.error = rendered.error
                    else:
                        r.notes = [f"rendered to {rendered.video} by lmmeval render", *rendered.notes, *r.notes]
                row = {"id": _input_id(f, inputs), **r.to_dict(), "path": str(f.resolve())}
                if r.ok:
                    # Low confidence: the level distribution of some dimension is too flat.
                    row["low_confidence"] = any(u["entropy"] > low_confidence_entropy for u in r.uncertainty.values())
                if r.ok and want_maps:
                    try:
                        if saliency_dir is not None:
                            stem = Path(saliency_dir) / row["id"]
                            write_saliency_png(stem.with_name(stem.name + ".saliency.png"), r)
                            if overlay:
                                row["overlay"] = str(write_overlay(stem.with_name(stem.name + ".overlay"), r))
                        if masks_dir is not None:
                            mask_path, strength = write_masks(Path(masks_dir) / row["id"], r, mask_threshold, mask_dilate)
                            row["mask"], row["refine_strength"] = str(mask_path), round(strength, 4)
                    except (OSError, ValueError) as err:
                        row["error"] = f"writing saliency outputs failed: {err}"
                out.write(json.dumps(row) + "\n")  # one complete line at a time
                out.flush()
                os.fsync(out.fileno())
            bar.update(len(chunk))
    bar.close()
    if csv_path is not None:
        write_csv(out_path, Path(csv_path))
    return ScoreSummary(total=len(files), kept=len(files) - len(todo), retried=retried, scored_now=len(todo),
                        **file_counts(out_path)._asdict())


def _render_meshes(meshes: list[Path], config, cache: Path, progress: bool) -> dict:
    """{mesh: its ``lmmeval.render.Rendered``} (with ``error`` set where it could not be rendered)."""
    if not meshes:
        return {}
    try:
        from ..render import RenderConfig, render_assets

        import mitsuba  # noqa: F401  (the optional extra)
        import trimesh  # noqa: F401
    except ImportError:
        from ..render import Rendered

        reason = "3D meshes are rendered before scoring, which needs pip install 'lmmeval[render]'"
        return {f: Rendered(source=str(f), error=f"{f}: {reason}") for f in meshes}
    results = render_assets(meshes, cache, config or RenderConfig(), resume=True, progress=progress)
    return dict(zip(meshes, results))


def _input_id(path: Path, roots: list[str | Path]) -> str:
    """The input's path relative to the folder argument it was found in (else its name)."""
    resolved = path.resolve()
    for root in map(Path, roots):
        root = root.resolve()
        if root.is_dir() and resolved.is_relative_to(root):
            return str(resolved.relative_to(root))
    return path.name


def score_distributed(assessor_factory, inputs: list[str | Path], out_path: str | Path, resume: bool = False,
                      **kwargs) -> ScoreSummary:
    """`lmmeval score` under torchrun / the deepspeed launcher: inputs sharded by rank.

    Rank r scores every world-th input into ``<out>.rank<r>-of-<world>`` (resumable like a
    single run); after a barrier rank 0 merges the shards and anything already in ``out``
    into ``out`` (input order, each input once) and removes the shards. ``assessor_factory``
    builds the assessor for a device.
    """
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    out_path = Path(out_path)
    files = collect_inputs(inputs)
    shard = out_path.with_name(f"{out_path.name}.rank{rank}-of-{world}")
    keep_failed = kwargs.get("keep_failed", False)
    before = read_rows(out_path) if resume and out_path.exists() else {}
    # Earlier failures in the merged file are scored again (their new rows replace them at the merge).
    merged_before = {p for p, r in before.items() if keep_failed or r.get("error") is None}
    dist.barrier()  # nobody may touch the merged file before everyone has read it
    assessor = assessor_factory(f"cuda:{local}" if cuda else "cpu")
    summary = score_files(assessor, inputs, shard, resume=resume, files=files[rank::world], also_done=merged_before,
                          progress=kwargs.pop("progress", True) and rank == 0, **kwargs)
    counts = torch.tensor([summary.scored_now, summary.retried], dtype=torch.long)
    dist.all_reduce(counts)
    dist.barrier()
    if rank == 0:
        _merge(out_path, [out_path.with_name(f"{out_path.name}.rank{r}-of-{world}") for r in range(world)], files)
    dist.barrier()
    scored_now, retried = counts.tolist()
    retried += sum(r.get("error") is not None for r in before.values()) if not keep_failed else 0
    return ScoreSummary(total=len(files), kept=len(files) - scored_now, retried=retried, scored_now=scored_now,
                        **file_counts(out_path)._asdict())


def _merge(out_path: Path, shards: list[Path], files: list[Path]) -> None:
    """Complete lines of the shards and ``out_path``, each input once (a shard's row, the newer, wins),
    in input order."""
    rows: dict[str, str] = {}
    for part in [*shards, out_path]:
        if part.exists():
            read_rows(part)  # cuts a torn last line
            for line in part.read_text().splitlines():
                rows.setdefault(json.loads(line)["path"], line)
    order = {str(f.resolve()): i for i, f in enumerate(files)}
    tmp = out_path.with_name(out_path.name + ".merging")
    tmp.write_text("".join(rows[p] + "\n" for p in sorted(rows, key=lambda p: order.get(p, len(order)))))
    tmp.replace(out_path)  # atomic: the merged file is complete or absent
    for part in shards:
        part.unlink(missing_ok=True)
