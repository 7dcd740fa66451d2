"""Every relative link of the repository's Markdown files leads somewhere: `](path)` to an existing file
or folder, and `](path#anchor)` / `](#anchor)` into a Markdown file to one of its headings (GitHub's
anchors). The README stays a front door: at most 200 lines, the rest in the guides under docs/."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Not the repository's documents: environments, caches, build and run outputs (see .gitignore).
SKIP_DIRS = {"build", "runs", "demo_out", "node_modules", "__pycache__"}
SKIP_TOP = {"data"}  # /data/ holds a reader's studies, ignored like runs/
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                         and not d.endswith(".egg-info") and not (here == root and d in SKIP_TOP))
        found += [here / f for f in sorted(files) if f.endswith(".md")]
    return found


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, inline code spans blanked (a `](x)` in code is no link)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(re.sub(r"`[^`]*`", "``", line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text (link targets, markup gone), lowercased, every
    character but letters, digits, spaces, - and _ dropped, spaces turned into -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` that lead nowhere, each with the reason."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for line in prose_lines(text):
        for target in LINK.findall(line):
            if SCHEME.match(target) or target.startswith("//"):
                continue
            file_part, _, anchor = target.partition("#")
            dest = path if not file_part else (path.parent / unquote(file_part)).resolve()
            if not dest.exists():
                problems.append(f"{target}: no such file or folder")
                continue
            if anchor and dest.is_file() and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
                problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``path`` (a repeated heading gets -1, -2, ...); from
    the headings as written, since the text of inline code is part of the anchor."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


DOCUMENTS = markdown_files()


def test_the_documents_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/README.md"} <= names
    assert not any(part.startswith(".") or part in SKIP_DIRS for p in names for part in Path(p).parts)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_somewhere(path):
    problems = broken_links(path)
    assert not problems, f"{path.relative_to(ROOT)}: broken links:\n" + "\n".join(problems)


def test_a_broken_link_is_caught(tmp_path):
    """The check itself: a missing file and a missing heading are reported, good links are not."""
    (tmp_path / "guide.md").write_text("# A guide: `lmmeval score`\n\n## Out of distribution\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](guide.md#a-guide-lmmeval-score) [ok](guide.md#out-of-distribution) [ok](#here)\n"
                    "# Here\n[bad](missing.md) [bad](guide.md#nowhere)\n```\n[code](not-a-link.md)\n```\n")
    assert broken_links(page) == ["missing.md: no such file or folder", "guide.md#nowhere: no heading #nowhere in guide.md"]


def test_github_anchors():
    assert slug("Comparing generators: `lmmeval report`") == "comparing-generators-lmmeval-report"
    assert slug("Real 7B shape, CPU (`make check-7b`)") == "real-7b-shape-cpu-make-check-7b"
    assert slug("Can the output be trusted? Render protocol and real photographs") == \
        "can-the-output-be-trusted-render-protocol-and-real-photographs"


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into a guide under docs/"
