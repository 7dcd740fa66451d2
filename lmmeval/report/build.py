"""Everything a report shows, computed from its inputs: ``build_report`` returns a ``Report``.

Groups come, in this order of precedence, from a groups CSV, from the manifest's generators, or
(neither given, or a manifest without generators) from the results files themselves: each file
is then one group, and files scored on the same inputs are compared paired.

With groups, each results file gets its own leaderboard of them; with a manifest, the same
leaderboard is built from the MOS of the inputs scored (the human leaderboard), each file's
ranking is compared with it (``RankAgreement``) and its scores with the MOS input by input
(``Correlation``, one row per results file: several checkpoints side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..labels import DIMENSIONS
from .agreement import Correlation, RankAgreement, distortion_profile, input_correlations, rank_agreement
from .inputs import Annotation, ResultsFile, csv_groups, load_results, manifest_annotations, unique_labels
from .ranking import Leaderboard, is_used, leaderboard

FILES_BOARD = "results files"  # the leaderboard's name when each file is a group
HUMAN_BOARD = "MOS"


@dataclass
class Report:
    """The numbers of a report; ``write_report`` turns it into files."""

    files: list[ResultsFile]
    groups: list[list[str]]  # per file, per row
    grouping: str  # "csv", "manifest" or "files"
    boards: list[Leaderboard]  # one per results file; one in all when grouping is "files"
    annotations: list[list[Annotation]] | None = None  # per file, per row (with a manifest)
    human: Leaderboard | None = None  # from MOS (with a manifest, grouped by generator or CSV)
    agreement: dict[str, list[RankAgreement]] = field(default_factory=dict)  # by board name
    correlations: dict[str, list[Correlation]] = field(default_factory=dict)  # by results file label
    profiles: dict[str, dict] = field(default_factory=dict)  # by board name: predicted categories
    annotated_profile: dict | None = None  # by group: annotated categories
    settings: dict = field(default_factory=dict)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return self.boards[0].dimensions


def build_report(results: list[str | Path], manifest: str | Path | None = None, groups: str | Path | None = None, *,
                 bootstrap: int = 2000, seed: int = 0, alpha: float = 0.05, include_ood: bool = False) -> Report:
    """Read ``results`` (files of `lmmeval score`) and compute every table of the report."""
    if not results:
        raise ValueError("no results file given")
    paths = [Path(p) for p in results]
    files = [load_results(p, label) for p, label in zip(paths, unique_labels(paths))]
    annotations, grouping = None, "files"
    if manifest is not None:
        annotations, has_generators = manifest_annotations(manifest, files)
        if has_generators:
            grouping = "manifest"
    if groups is not None:
        of = csv_groups(groups, files)
        grouping = "csv"
    elif grouping == "manifest":
        of = [[a.group for a in per_file] for per_file in annotations]
    else:
        of = [[f.label] * len(f.rows) for f in files]
    options = dict(bootstrap=bootstrap, seed=seed, alpha=alpha, include_ood=include_ood)
    report = Report(files=files, groups=of, grouping=grouping, boards=[], annotations=annotations,
                    settings={**options, "results": [str(p) for p in paths], "labels": [f.label for f in files],
                              "manifest": None if manifest is None else str(manifest),
                              "groups": None if groups is None else str(groups), "grouping": grouping})
    if grouping == "files":
        report.boards = [leaderboard([r for f in files for r in f.rows], [g for per in of for g in per],
                                     name=FILES_BOARD, **options)]
        report.profiles[FILES_BOARD] = distortion_profile(
            {f.label: [r.get("distortions") if is_used(r, include_ood) else None for r in f.rows] for f in files})
    else:
        report.boards = [leaderboard(f.rows, g, name=f.label, **options) for f, g in zip(files, of)]
        for f, g in zip(files, of):
            report.profiles[f.label] = distortion_profile(_by_group(
                g, [r.get("distortions") if is_used(r, include_ood) else None for r in f.rows]))
    if annotations is not None:
        _against_humans(report, bootstrap, seed, alpha, include_ood)
    return report


def _by_group(groups: list[str], values: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for g, v in zip(groups, values):
        out.setdefault(g, []).append(v)
    return out


def _against_humans(report: Report, bootstrap: int, seed: int, alpha: float, include_ood: bool) -> None:
    files, annotations = report.files, report.annotations
    for f, per_file in zip(files, annotations):
        used = [(r, a) for r, a in zip(f.rows, per_file) if is_used(r, include_ood)]
        report.correlations[f.label] = [input_correlations([r[d] for r, _ in used], [a.mos[d] for _, a in used], d)
                                        for d in DIMENSIONS]
    if report.grouping == "files":
        # Every file is a group of the same study: no human leaderboard of files; its categories
        # are the study's, one row beside the files' predicted ones.
        seen = _unique_records(files, annotations, report.groups)
        report.annotated_profile = distortion_profile({"annotated": [a.categories for a, _ in seen.values()]})
        return
    seen = _unique_records(files, annotations, report.groups)
    mos_rows = [{"id": key, "path": str(a.video), **a.mos, "error": None} for key, (a, _) in seen.items()]
    report.human = leaderboard(mos_rows, [g for _, g in seen.values()], name=HUMAN_BOARD, bootstrap=bootstrap,
                               seed=seed, alpha=alpha)
    report.annotated_profile = distortion_profile(_by_group([g for _, g in seen.values()],
                                                            [a.categories for a, _ in seen.values()]))
    for f, per_file, board, groups in zip(files, annotations, report.boards, report.groups):
        pairs = {d: {} for d in DIMENSIONS}
        for r, a, g in zip(f.rows, per_file, groups):
            if is_used(r, include_ood):
                for d in DIMENSIONS:
                    pairs[d].setdefault(g, []).append((r[d], a.mos[d]))
        report.agreement[board.name] = [rank_agreement(pairs[d], d, bootstrap, seed, name=f.label)
                                        for d in DIMENSIONS]


def _unique_records(files, annotations, groups) -> dict[str, tuple[Annotation, str]]:
    """{record key: (its annotation, its group)} over every row of every file, each record once."""
    seen: dict[str, tuple[Annotation, str]] = {}
    for f, per_file, per_groups in zip(files, annotations, groups):
        for a, g in zip(per_file, per_groups):
            seen.setdefault(a.record, (a, g))
    return seen
