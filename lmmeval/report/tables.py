"""The report's tables as files: leaderboard.csv (one line per board and group), leaderboard.md
(every table, for reading and pasting) and leaderboard.json (every number, the tests included)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

from ..labels import DISTORTIONS
from .build import Report
from .ranking import Leaderboard


def fmt(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def fmt_ci(mean, lo, hi, digits: int = 1) -> str:
    if mean is None:
        return "n/a"
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else ""
    return f"{mean:.{digits}f}{ci}"


def boards_of(report: Report) -> list[Leaderboard]:
    """Every leaderboard of the report, the human one last."""
    return report.boards + ([report.human] if report.human is not None else [])


def leaderboard_csv(report: Report) -> str:
    dims = report.dimensions
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["scores", "group", "inputs", "used", "failed", "out_of_distribution", "low_confidence",
                     *[f"{d}_{k}" for d in dims for k in ("mean", "ci_low", "ci_high", "rank", "above")]])
    for board in boards_of(report):
        for e in board.entries:
            cells = []
            for d in dims:
                s = e.scores[d]
                cells += [fmt(s.mean, 4), fmt(s.ci_low, 4), fmt(s.ci_high, 4), "" if s.rank is None else s.rank,
                          ";".join(s.above)]
            writer.writerow([board.name, e.group, e.inputs, e.used, e.failed, e.out_of_distribution,
                             e.low_confidence, *cells])
    return out.getvalue()


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    def cell(v) -> str:
        return str(v).replace("|", "\\|")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows), ""]


def board_md(board: Leaderboard) -> list[str]:
    dims = board.dimensions
    header = ["group", "inputs", "used", "failed", "OOD", "low-conf."]
    for d in dims:
        header += [f"{d} [95% CI]", f"rank ({d})", f"above ({d})"]
    rows = []
    for e in board.entries:
        row = [e.group, e.inputs, e.used, e.failed, e.out_of_distribution, e.low_confidence]
        for d in dims:
            s = e.scores[d]
            row += [fmt_ci(s.mean, s.ci_low, s.ci_high), "" if s.rank is None else s.rank, ", ".join(s.above)]
        rows.append(row)
    significant = sum(c.significant for c in board.comparisons)
    paired = sum(c.paired for c in board.comparisons)
    note = (f"{len(board.comparisons)} pairwise tests ({paired} paired), {significant} significant at "
            f"Holm-adjusted p < {board.alpha:g}")
    if board.untested:
        note += f"; {len(board.untested)} pair(s) not tested (a group with fewer than 2 scores)"
    return _md_table(header, rows) + [note + ".", ""]


def agreement_rows(report: Report) -> list[list]:
    rows = []
    for name, items in report.agreement.items():
        for a in items:
            rows.append([name, a.dimension, a.groups,
                         fmt_ci(a.kendall_tau, *(a.kendall_ci or (None, None)), digits=3),
                         fmt_ci(a.srcc, *(a.srcc_ci or (None, None)), digits=3), a.note])
    return rows


def correlation_rows(report: Report) -> tuple[list[str], list[list]]:
    dims = report.dimensions
    header = ["results", "n"] + [f"{d} {m}" for d in dims for m in ("SRCC", "PLCC", "KRCC")]
    rows = []
    for label, items in report.correlations.items():
        by_dim = {c.dimension: c for c in items}
        row = [label, items[0].n]
        for d in dims:
            c = by_dim[d]
            row += [fmt(c.srcc, 3), fmt(c.plcc, 3), fmt(c.krcc, 3)]
        rows.append(row)
    return header, rows


def profile_rows(profile: dict) -> list[list]:
    return [[g, p["n"], *("" if p["shares"][c] is None else f"{p['shares'][c]:.0%}" for c in DISTORTIONS)]
            for g, p in profile.items()]


PROFILE_HEADER = ["group", "inputs"] + list(DISTORTIONS)


def leaderboard_md(report: Report) -> str:
    s = report.settings
    left_out = ("out-of-distribution inputs included" if s["include_ood"] else
                "failed and out-of-distribution inputs left out (counted)")
    lines = ["# Leaderboard", "",
             f"Scores: {', '.join(f'`{p}`' for p in s['results'])}; groups: {_grouping_words(report)}. Means "
             f"with 95% bootstrap intervals ({s['bootstrap']} resamples, seed {s['seed']}); "
             f"{left_out}; "
             f"'above': groups with a lower mean at Holm-adjusted p < {s['alpha']:g}.", ""]
    for board in report.boards:
        title = board.name if report.grouping == "files" else f"`{board.name}`"
        lines += [f"## {title}", "", *board_md(board)]
    if report.human is not None:
        lines += ["## MOS (the human leaderboard)", "", *board_md(report.human)]
    if report.agreement:
        lines += ["## Rank agreement with MOS (over groups)", "",
                  *_md_table(["results", "dimension", "groups", "Kendall tau [95% CI]", "SRCC [95% CI]", "note"],
                             agreement_rows(report))]
    if report.correlations:
        header, rows = correlation_rows(report)
        lines += ["## Agreement with MOS (over inputs; PLCC after a logistic-4 fit)", "", *_md_table(header, rows)]
    for name, profile in report.profiles.items():
        lines += [f"## Distortion profile: {name} (predicted)", "", *_md_table(PROFILE_HEADER, profile_rows(profile))]
    if report.annotated_profile is not None:
        lines += ["## Distortion profile: annotated", "",
                  *_md_table(PROFILE_HEADER, profile_rows(report.annotated_profile))]
    return "\n".join(lines)


def _grouping_words(report: Report) -> str:
    s = report.settings
    return {"csv": f"from `{s['groups']}`", "manifest": f"the generators of `{s['manifest']}`",
            "files": "one per results file"}[report.grouping]


def leaderboard_json(report: Report, command: str | None, commit: str) -> str:
    data = {
        "settings": report.settings, "command": command, "commit": commit,
        "leaderboards": [b.to_dict() for b in report.boards],
        "human": None if report.human is None else report.human.to_dict(),
        "rank_agreement": {k: [asdict(a) for a in v] for k, v in report.agreement.items()},
        "correlations": {k: [asdict(c) for c in v] for k, v in report.correlations.items()},
        "distortion_profiles": {"predicted": report.profiles, "annotated": report.annotated_profile},
    }
    return json.dumps(data, indent=1, allow_nan=False)
