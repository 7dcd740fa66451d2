"""Runs record the commit they start from: checked in a throw-away git repository."""

import shutil
import subprocess

import pytest

from lmmeval.provenance import git_commit


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_is_the_short_head_and_dirty_only_for_tracked_changes(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    assert git_commit(tmp_path) == "unknown"  # not a checkout yet
    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-qm", "first")
    head = git("rev-parse", "--short", "HEAD")
    assert len(head) >= 7 and git_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_commit(tmp_path) == head  # untracked files do not make a run dirty
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "-dirty"
