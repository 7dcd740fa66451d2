"""``write_report``: a report's folder, built beside its place and renamed there when complete.

    DIR/index.html          the page (open it from the file system; nothing is fetched)
    DIR/leaderboard.csv     one line per leaderboard and group
    DIR/leaderboard.md      every table
    DIR/leaderboard.json    every number, the pairwise tests included, with the command and commit
    DIR/plots/*.png         score distributions, predicted vs MOS, distortion heat map
    DIR/thumbs/*.jpg        the gallery's thumbnails

An existing DIR is replaced only with ``overwrite``, and only when it holds an earlier report
(a leaderboard.json): a folder of other files (the study, the results) is never taken for one.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from ..data.folders import check_output_folder, staged_folder
from ..labels import DIMENSIONS
from ..provenance import git_commit
from . import plots as plotting
from .build import Report, build_report
from .ranking import is_used
from .page import gallery_item, render
from .tables import leaderboard_csv, leaderboard_json, leaderboard_md
from .thumbs import make_thumbnail, picture_sources

MARKER = "leaderboard.json"  # what makes a folder an earlier report


def check_out(out: Path, inputs: dict[str, Path], overwrite: bool) -> None:
    """Refuse an --out that holds an input, an earlier report (unless ``overwrite``) or other files."""
    check_output_folder(out, inputs, overwrite=True)  # never the inputs; emptiness is decided below
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"--out {out} is a folder of other files (no {MARKER}): give a new or empty folder "
                             "for the report")
        if not overwrite:
            raise ValueError(f"--out {out} holds an earlier report ({MARKER}): --overwrite replaces it, or give "
                             "another folder")


def write_report(out: str | Path, results: list[str | Path], manifest: str | Path | None = None,
                 groups: str | Path | None = None, *, bootstrap: int = 2000, seed: int = 0, alpha: float = 0.05,
                 include_ood: bool = False, overwrite: bool = False, thumbnails: bool = True,
                 command: str | None = None, log=None) -> Report:
    """Compute the report of ``results`` (files of `lmmeval score`) and write it into ``out``.

    ``manifest``: the study's manifest (groups from its generators, MOS, annotated categories);
    ``groups``: a CSV of input,group lines (instead of the generators). Every input is read and
    every number computed before anything is written. Returns the ``Report``."""
    out = Path(out)
    commit = git_commit()
    inputs = {f"results file {p}": Path(p) for p in results}
    inputs |= {f"manifest {manifest}": Path(manifest)} if manifest is not None else {}
    inputs |= {f"groups CSV {groups}": Path(groups)} if groups is not None else {}
    check_out(out, inputs, overwrite)
    report = build_report(results, manifest=manifest, groups=groups, bootstrap=bootstrap, seed=seed, alpha=alpha,
                          include_ood=include_ood)
    say = log or (lambda message: None)
    with staged_folder(out) as tmp:
        (tmp / "leaderboard.csv").write_text(leaderboard_csv(report))
        (tmp / "leaderboard.md").write_text(leaderboard_md(report))
        (tmp / MARKER).write_text(leaderboard_json(report, command, commit))
        figures = _plots(report, tmp, say)
        items = _gallery(report, tmp, thumbnails, say)
        (tmp / "index.html").write_text(render(report, figures, items, command, commit), encoding="utf-8")
    return report


def _slug(name: str, k: int) -> str:
    return f"{k + 1}-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "scores")[:40]


def _plots(report: Report, folder: Path, say) -> dict:
    if not plotting.available():
        return {"missing": "No plots: matplotlib is not installed (pip install 'lmmeval[plots]')."}
    (folder / "plots").mkdir()
    say("plotting")
    figures: dict[str, list] = {"scores": [], "scatter": [], "distortions": []}

    def add(section: str, name: str, caption: str) -> None:
        with Image.open(folder / name) as img:
            figures[section].append((name, caption, img.size))

    include_ood = report.settings["include_ood"]
    boards = report.boards + ([report.human] if report.human is not None else [])
    for k, board in enumerate(boards):
        values = _values(report, board)
        name = f"plots/scores_{_slug(board.name, k)}.png"
        plotting.score_distributions(board, values, folder / name, seed=report.settings["seed"])
        add("scores", name, f"{board.name}: scores per group, mean and 95% interval")
    if report.annotations is not None:
        for k, (f, per_file) in enumerate(zip(report.files, report.annotations)):
            used = [(r, a) for r, a in zip(f.rows, per_file) if is_used(r, include_ood)]
            pred = {d: [r[d] for r, _ in used] for d in DIMENSIONS}
            mos = {d: [a.mos[d] for _, a in used] for d in DIMENSIONS}
            fits = {c.dimension: c.fit_params for c in report.correlations[f.label]}
            name = f"plots/scatter_{_slug(f.label, k)}.png"
            plotting.mos_scatter(f.label, pred, mos, fits, folder / name)
            add("scatter", name, f"{f.label}: predicted vs MOS with the fitted logistic")
    panels = [(f"{name}: predicted", profile) for name, profile in report.profiles.items()]
    if report.annotated_profile is not None:
        panels.append(("annotated", report.annotated_profile))
    name = "plots/distortions.png"
    plotting.distortion_heatmap(panels, folder / name)
    add("distortions", name, "share of each group's inputs with each distortion category")
    return figures


def _values(report: Report, board) -> dict[str, dict[str, list[float]]]:
    """{dimension: {group: the scores in its mean}} of a board."""
    out = {d: {} for d in board.dimensions}
    if board is report.human:
        seen = set()
        for per_file, per_groups in zip(report.annotations, report.groups):
            for a, g in zip(per_file, per_groups):
                if a.record not in seen:
                    seen.add(a.record)
                    for d in board.dimensions:
                        out[d].setdefault(g, []).append(a.mos[d])
        return out
    if report.grouping == "files":  # one board of every file
        members = list(zip(report.files, report.groups))
    else:
        k = report.boards.index(board)
        members = [(report.files[k], report.groups[k])]
    for f, groups in members:
        for r, g in zip(f.rows, groups):
            if is_used(r, report.settings["include_ood"]):
                for d in board.dimensions:
                    out[d].setdefault(g, []).append(r[d])
    return out


def _gallery(report: Report, folder: Path, thumbnails: bool, say) -> list[dict]:
    """The gallery's items, their thumbnails written into ``folder``/thumbs (one per input picture)."""
    (folder / "thumbs").mkdir()
    made: dict[tuple, tuple[str, tuple[int, int]] | None] = {}
    items = []
    total = sum(len(f.rows) for f in report.files)
    if thumbnails and total > 500:
        say(f"making thumbnails of {total} inputs")
    for k, f in enumerate(report.files):
        annotations = report.annotations[k] if report.annotations is not None else [None] * len(f.rows)
        for row, group, a in zip(f.rows, report.groups[k], annotations):
            thumb = None
            if thumbnails:
                kind, sources = picture_sources(Path(row["path"]), row.get("overlay"))
                if kind == "none" and a is not None and a.video is not None:
                    kind, sources = picture_sources(a.video, None)
                key = tuple(sources)
                if sources and key not in made:
                    name = f"thumbs/{len(made)}.jpg"
                    size = make_thumbnail(sources, folder / name)
                    made[key] = (name, size) if size else None
                thumb = made.get(key) if sources else None
            items.append(gallery_item(len(items), k, row, group, a.mos if a is not None else None,
                                      thumb[0] if thumb else None, thumb[1] if thumb else None))
    return items
