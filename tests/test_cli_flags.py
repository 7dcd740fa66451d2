"""Every user-facing flag of `lmmeval` has a test that names it: a new flag without one fails here.

A flag counts as tested when some test file other than this one passes it (its option string in
quotes, e.g. "--resume"), so the check reads the argparse parser, not a list kept by hand.
"""

import argparse
import re
from pathlib import Path

from lmmeval.cli import build_parser

TESTS = Path(__file__).resolve().parent
# Flags every argparse command has, and flags that only choose where help text goes.
GENERIC = {"-h", "--help", "-q", "--quiet", "-v", "--verbose"}


def cli_flags() -> dict[str, set[str]]:
    """{sub-command: its option strings}."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s for action in sub._actions for s in action.option_strings if s.startswith("--")} - GENERIC
            for name, sub in subparsers.choices.items()}


def test_every_flag_has_a_test_that_passes_it():
    text = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name)
    missing = {command: sorted(f for f in flags if not re.search(rf"[\"']{re.escape(f)}(=|[\"'])", text))
               for command, flags in cli_flags().items()}
    missing = {command: flags for command, flags in missing.items() if flags}
    assert not missing, f"flags no test passes: {missing}"
