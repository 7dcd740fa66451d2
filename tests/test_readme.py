"""The README's Python examples run as written (CPU, offline); the results page quotes its run."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


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


def test_readme_python_blocks_run_and_print_what_the_readme_shows(tmp_path, monkeypatch):
    """Every python block runs; where the README shows a print's output as a literal (e.g.
    `# ['excellent', 'bad', 'good']`), the block prints exactly that."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    checked = 0
    for i, block in enumerate(blocks):
        printed: list[str] = []
        exec(compile(block, f"README.md python block {i + 1}", "exec"),
             {"print": lambda *args, **kw: printed.append(" ".join(map(str, args)))})
        shown = printed_outputs(block)
        assert len(printed) == len(shown), f"block {i + 1}: each print( line should run once"
        for got, expected in zip(printed, shown):
            if expected is not None:
                assert got == expected, f"README.md python block {i + 1} prints {got!r}, the README shows {expected!r}"
                checked += 1
    assert checked >= 3


def test_results_md_quotes_the_cross_validation_run_it_discusses():
    """docs/results.md is written by hand around docs/results_cv.json (written by `make cv`): its
    targets table must quote that run's means and stds, so a rerun that moves them shows here."""
    import json

    import numpy as np

    docs = README.parent / "docs"
    folds = json.loads((docs / "results_cv.json").read_text())["folds"]
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
