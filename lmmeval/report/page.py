"""index.html: the report as one self-contained page.

The page is ``page/report.html`` with its style (``report.css``) and behaviour (``report.js``)
written in, and no reference to anything outside the report's folder but links to the inputs
themselves: it opens from a file:// URL, offline. The leaderboards are sortable tables; the
gallery's items are embedded as JSON and rendered a page (60 items) at a time, worst first,
filtered by group, category and flag, so that 10,000 inputs load as fast as 60.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources

from ..labels import DISTORTIONS
from .build import FILES_BOARD, Report
from .ranking import Leaderboard
from .tables import PROFILE_HEADER, agreement_rows, correlation_rows, fmt, profile_rows

SORTS = (("q:asc", "quality, worst first"), ("a:asc", "authenticity, worst first"),
         ("q:desc", "quality, best first"), ("a:desc", "authenticity, best first"))


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("page", name).read_text(encoding="utf-8")


def _th(label: str, numeric: bool, sortable: bool = True) -> str:
    kind = ' data-type="num"' if numeric else ' class="text"'
    inner = f"<button type=\"button\">{_e(label)}</button>" if sortable else _e(label)
    return f"<th scope=\"col\"{kind}>{inner}</th>"


def _num(value, digits: int = 1) -> str:
    text = fmt(value, digits) if isinstance(value, float) else ("" if value is None else str(value))
    return f'<td data-value="{"" if value is None else value}">{_e(text)}</td>'


def _score_cell(s) -> str:
    """The mean, its interval in words, and a small bar of the interval on the 0-100 scale."""
    if s.mean is None:
        return '<td data-value="">n/a</td>'
    bar = ""
    if s.ci_low is not None:
        lo, hi = max(0.0, min(100.0, s.ci_low)), max(0.0, min(100.0, s.ci_high))
        bar = (f'<span class="ci" aria-hidden="true"><span style="left:{lo:.1f}%;width:{max(hi - lo, 0.5):.1f}%">'
               f'</span><i style="left:{max(0.0, min(99.0, s.mean)):.1f}%"></i></span>')
        ci = f' <span class="ci-text">[{s.ci_low:.1f}, {s.ci_high:.1f}]</span>'
    else:
        ci = ' <span class="ci-text">(one input)</span>'
    return f'<td data-value="{s.mean}">{s.mean:.1f}{ci}{bar}</td>'


def board_table(board: Leaderboard, table_id: str) -> str:
    dims = board.dimensions
    head = [_th("group", False), _th("inputs", True), _th("used", True), _th("failed", True), _th("OOD", True),
            _th("low conf.", True)]
    for d in dims:
        # Each dimension's rank and "above" follow its mean: short labels keep the table narrow.
        head += [_th(f"{d} [95% CI]", True), _th("rank", True), _th("above", True)]
    body = []
    for e in board.entries:
        cells = [f'<td class="text">{_e(e.group)}</td>', _num(e.inputs), _num(e.used), _num(e.failed),
                 _num(e.out_of_distribution), _num(e.low_confidence)]
        for d in dims:
            s = e.scores[d]
            cells += [_score_cell(s), _num(s.rank),
                      f'<td class="above" data-value="{len(s.above)}">{_e(", ".join(s.above)) or "&ndash;"}</td>']
        body.append(f'<tr data-group="{_e(e.group)}">' + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable board" id="{table_id}" data-board="{_e(board.name)}">'
            f'<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def tests_table(board: Leaderboard) -> str:
    head = "".join(_th(h, n) for h, n in (("dimension", False), ("a", False), ("b", False), ("mean a - b", True),
                                         ("test", False), ("n", False), ("p", True), ("p (Holm)", True)))
    rows = []
    for c in sorted(board.comparisons, key=lambda c: (c.dimension, c.p_holm)):
        n = f"{c.n[0]} pairs" if c.paired else f"{c.n[0]} vs {c.n[1]}"
        mark = " *" if c.significant else ""
        rows.append(f'<tr><td class="text">{_e(c.dimension)}</td><td class="text">{_e(c.a)}</td>'
                    f'<td class="text">{_e(c.b)}</td>{_num(c.difference, 2)}'
                    f'<td class="text">{_e(c.test)}</td><td class="text">{n}</td>'
                    f'<td data-value="{c.p}">{c.p:.3g}</td><td data-value="{c.p_holm}">{c.p_holm:.3g}{mark}</td></tr>')
    significant = sum(c.significant for c in board.comparisons)
    return (f"<details><summary>{len(board.comparisons)} pairwise tests, {significant} significant "
            f"(* Holm-adjusted p &lt; {board.alpha:g})</summary><div class=\"scroll\"><table class=\"sortable\">"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></details>")


def _plain_table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    head = "".join(_th(h, i >= numeric_from) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="text">{_e(v)}</td>' if i < numeric_from else f"<td>{_e(v)}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _figure(path: str, caption: str, size: tuple[int, int]) -> str:
    # The image's own size: the page's layout does not move as the (lazy) plots arrive.
    return (f'<figure class="plot"><img src="{_e(path)}" alt="{_e(caption)}" width="{size[0]}" height="{size[1]}" '
            f'loading="lazy"><figcaption>{_e(caption)}</figcaption></figure>')


def _options(values: list[tuple[str, str]], all_label: str | None) -> str:
    first = f'<option value="">{_e(all_label)}</option>' if all_label else ""
    return first + "".join(f'<option value="{_e(v)}">{_e(label)}</option>' for v, label in values)


def _header(report: Report, command: str | None, commit: str) -> str:
    s = report.settings
    n_inputs = sum(len(f.rows) for f in report.files)
    groups = {g for per in report.groups for g in per}
    source = {"csv": f"from {s['groups']}", "manifest": f"generators of {s['manifest']}",
              "files": "one per results file"}[report.grouping]
    left_out = ("out-of-distribution inputs included" if s["include_ood"] else
                "failed and out-of-distribution inputs left out of the means (counted)")
    made = f" Made by <code>{_e(command)}</code> at {_e(commit)}." if command else ""
    humans = '<a href="#humans">Against humans</a>' if report.correlations else ""
    return (f'<header><h1>lmmeval report</h1><p class="meta">{n_inputs} scored inputs in {len(report.files)} '
            f'results file(s) ({_e(", ".join(s["results"]))}); {len(groups)} groups ({_e(source)}).</p>'
            f'<p class="meta">Means with 95% bootstrap intervals ({s["bootstrap"]} resamples, seed {s["seed"]}); '
            f'{left_out}; "above": groups with a lower mean at Holm-adjusted p &lt; {s["alpha"]:g}.{made}</p>'
            f'<nav><a href="#leaderboards">Leaderboards</a>{humans}<a href="#distortions">Distortions</a>'
            f'<a href="#plots">Plots</a><a href="#gallery">Gallery</a></nav></header><main>')


def render(report: Report, plots: dict, items: list[dict], command: str | None, commit: str) -> str:
    """The page's HTML; ``plots``: {section: [(relative path, caption, (width, height))]}, or
    {"missing": why there are none}; ``items``: the gallery."""
    parts = [_header(report, command, commit), '<section id="leaderboards"><h2>Leaderboards</h2>']
    for k, board in enumerate(report.boards):
        title = "Results files" if board.name == FILES_BOARD else f"Scores of {board.name}"
        parts += [f"<h3>{_e(title)}</h3>", board_table(board, "leaderboard" if k == 0 else f"leaderboard-{k}"),
                  tests_table(board)]
    parts.append("</section>")
    if report.correlations:
        parts.append('<section id="humans"><h2>Against humans</h2>')
        if report.human is not None:
            parts += ["<h3>The human leaderboard (MOS of the scored inputs)</h3>",
                      board_table(report.human, "leaderboard-mos"), tests_table(report.human)]
        if report.agreement:
            parts += ["<h3>Rank agreement with MOS (over groups)</h3>",
                      '<p class="note">Kendall\'s tau-b and SRCC between the groups\' mean scores and mean MOS over '
                      "the same inputs; 95% bootstrap intervals.</p>",
                      _plain_table(["results", "dimension", "groups", "Kendall tau [95% CI]", "SRCC [95% CI]", "note"],
                                   agreement_rows(report), numeric_from=2)]
        header, rows = correlation_rows(report)
        parts += ["<h3>Agreement with MOS (over inputs)</h3>",
                  '<p class="note">SRCC, PLCC (after a logistic-4 fit) and KRCC of each results file against MOS.</p>',
                  _plain_table(header, rows), "</section>"]
    parts.append('<section id="distortions"><h2>Distortion profiles</h2>')
    parts += [_figure(*figure) for figure in plots.get("distortions", [])]
    for name, profile in report.profiles.items():
        parts += [f"<details><summary>{_e(name)}: shares of inputs (predicted)</summary>",
                  _plain_table(PROFILE_HEADER, profile_rows(profile)), "</details>"]
    if report.annotated_profile is not None:
        parts += ["<details><summary>shares of inputs (annotated)</summary>",
                  _plain_table(PROFILE_HEADER, profile_rows(report.annotated_profile)), "</details>"]
    parts.append("</section>")
    parts.append('<section id="plots"><h2>Plots</h2>')
    if plots.get("missing"):
        parts.append(f'<p class="note">{_e(plots["missing"])}</p>')
    parts += [_figure(*figure) for figure in plots.get("scores", []) + plots.get("scatter", [])]
    parts.append("</section>")
    files = [f.label for f in report.files]
    groups = sorted({g for per in report.groups for g in per})
    file_options = _options([(str(i), f) for i, f in enumerate(files)], "all")
    file_filter = f'<label>results <select id="filter-file">{file_options}</select></label>' if len(files) > 1 else ""
    parts += ['<section id="gallery"><h2>Gallery</h2><div class="controls">',
              f'<label>group <select id="filter-group">{_options([(g, g) for g in groups], "all groups")}'
              "</select></label>",
              f'<label>category <select id="filter-category">'
              f'{_options([(str(i), c) for i, c in enumerate(DISTORTIONS)], "all categories")}</select></label>',
              '<label>flag <select id="filter-flag">'
              + _options([("ood", "out of distribution"), ("lowconf", "low confidence"), ("failed", "failed")], "any")
              + "</select></label>", file_filter,
              f'<label>sort <select id="gallery-sort">{_options(list(SORTS), None)}</select></label>',
              '<span id="gallery-count" class="note"></span></div>',
              '<div id="gallery-items"></div><button id="gallery-more" type="button">show more</button></section>',
              "</main>"]
    data = {"items": items, "categories": list(DISTORTIONS), "files": files}
    # In a <script> element only "</" could end it early: escaped, the JSON is unchanged.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    values = {"title": _e(f"lmmeval report: {', '.join(files)}"), "css": _asset("report.css"),
              "js": _asset("report.js"), "body": "\n".join(parts), "data": payload}
    # One pass over the template: a {{name}} inside a value (a group's name) is left as it is.
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _asset("report.html"))
    return page


def gallery_item(index: int, file_index: int, row: dict, group: str, mos: dict | None, thumb: str | None,
                 size: tuple[int, int] | None) -> dict:
    """One gallery entry (short keys: 10,000 of them are embedded in the page; the page links the
    input's path ``p`` and its overlay ``v``)."""
    failed = row.get("error") is not None
    return {
        "i": index, "f": file_index, "id": row["id"], "g": group, "p": row["path"],
        "q": None if failed else row["quality"], "a": None if failed else row["authenticity"],
        "ql": row.get("quality_level") or "", "al": row.get("authenticity_level") or "",
        "mq": None if mos is None else mos["quality"], "ma": None if mos is None else mos["authenticity"],
        "d": [DISTORTIONS.index(c) for c in (row.get("distortions") or [])],
        "o": 1 if row.get("out_of_distribution") else 0, "l": 1 if row.get("low_confidence") else 0,
        "e": row.get("error"), "v": row.get("overlay"),
        "t": thumb, "w": size[0] if size else None, "h": size[1] if size else None,
    }
