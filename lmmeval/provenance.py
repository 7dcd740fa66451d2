"""Where a result came from: the commit a run starts from, recorded next to its numbers."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str:
    """The checked-out commit (short hash), '-dirty' appended when tracked files differ from it,
    or 'unknown' outside a git checkout. Long runs take it when they start: the code they import then
    is the code they run."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=here, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, cwd=here, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if changed else "")
