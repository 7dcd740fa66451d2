"""The Python examples of the README and the guides in docs/ run as written (CPU, offline); the
results page quotes its run."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
# The README and every guide with Python examples; each block runs on its own (self-contained).
DOCS = [README, *(README.parent / "docs" / name for name in (
    "api.md", "data.md", "evaluation.md", "scoring.md", "rendering.md", "training.md", "design.md"))]


def printed_outputs(block: str) -> list[str | None]:
    """For each print( line of ``block``, in order, the output the README shows beside it: a Python
    literal in its trailing comment or in a comment line right below it (None: the comment is prose)."""
    import ast

    lines = block.splitlines()
    shown = []
    for k, line in enumerate(lines):
        if not line.lstrip().startswith("print("):
            continue
        comments = [line.split("#", 1)[1] if "#" in line else None,
                    lines[k + 1].lstrip()[1:] if k + 1 < len(lines) and lines[k + 1].lstrip().startswith("#") else None]
        value = None
        for text in filter(None, comments):
            try:
                value = str(ast.literal_eval(text.strip()))
                break
            except (ValueError, SyntaxError):
                continue
        shown.append(value)
    return shown


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


def test_readme_and_api_guide_have_python_examples():
    assert python_blocks(README), "README has no python example"
    assert python_blocks(README.parent / "docs" / "api.md"), "docs/api.md has no python example"


@pytest.mark.parametrize("doc", [d for d in DOCS if python_blocks(d)], ids=lambda p: p.name)
def test_python_blocks_run_and_print_what_the_doc_shows(doc, tmp_path, monkeypatch):
    """Every python block runs; where the document shows a print's output as a literal (e.g.
    `# ['excellent', 'bad', 'good']`), the block prints exactly that."""
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(python_blocks(doc)):
        printed: list[str] = []
        exec(compile(block, f"{doc.name} python block {i + 1}", "exec"),
             {"print": lambda *args, **kw: printed.append(" ".join(map(str, args)))})
        shown = printed_outputs(block)
        assert len(printed) == len(shown), f"{doc.name} block {i + 1}: each print( line should run once"
        for got, expected in zip(printed, shown):
            if expected is not None:
                assert got == expected, f"{doc.name} python block {i + 1} prints {got!r}, the doc shows {expected!r}"


def test_the_docs_show_printed_literals_to_check():
    """The check above means something only if some examples show their output as a literal."""
    shown = [value for doc in DOCS for block in python_blocks(doc) for value in printed_outputs(block)]
    assert sum(value is not None for value in shown) >= 3


def test_results_md_quotes_the_cross_validation_run_it_discusses():
    """docs/results.md is written by hand around docs/results/cv/results.json (written by `make cv`): its
    targets table must quote that run's means and stds, so a rerun that moves them shows here."""
    import json

    import numpy as np

    docs = README.parent / "docs"
    folds = json.loads((docs / "results" / "cv" / "results.json").read_text())["folds"]
    rows = {line.split("|")[1].strip(): line for line in (docs / "results.md").read_text().splitlines()
            if line.startswith("| ")}

    def cell(values, scale=1.0, digits=3):
        return f"{scale * np.mean(values):.{digits}f} ± {scale * np.std(values):.{digits}f}"

    for dim in ("quality", "authenticity"):
        assert cell([f["assessor"][dim]["srcc"] for f in folds]) in rows[f"SRCC ≥ 0.90, {dim}"]
    exact = [f["assessor"]["distortions"]["exact_set_accuracy"] for f in folds]
    assert cell(exact, 100, 1) + " %" in rows["distortion exact-set accuracy ≥ 70 %"]
    assert cell([f["assessor"]["saliency"]["cc"] for f in folds]) in rows["saliency CC ≥ 0.6"]


def test_script_help_keeps_its_command_line_continuations():
    """The scripts' docstrings are their --help (argparse's RawDescriptionHelpFormatter): a
    backslash at the end of a line in a plain string joins the lines, so the example commands
    printed by --help would run together; each continuation must survive into the docstring."""
    import ast

    root = README.parent
    for path in sorted([*root.glob("train/*.py"), *root.glob("data_prep/*.py")]):
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree, clean=False)
        if doc is None:
            continue
        node = tree.body[0].value
        source = path.read_text().splitlines()[node.lineno - 1:node.end_lineno]
        continued = sum(line.endswith("\\") for line in source)
        assert doc.count("\\\n") == continued, f"{path.name}: make its docstring raw (r\"\"\"...\"\"\")"
