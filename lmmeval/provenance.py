"""Where a result came from: the commit a run starts from, recorded next to its numbers."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(repo: str | Path | None = None) -> str:
    """The checked-out commit (short hash) of ``repo`` (default: the checkout lmmeval is imported
    from), '-dirty' appended when tracked files differ from it (untracked files do not count), or
    'unknown' outside a git checkout. Long runs take it when they start: the code they import then
    is the code they run."""
    here = Path(repo) if repo is not None else Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=here, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, cwd=here, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if changed else "")
