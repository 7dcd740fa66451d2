"""Every shell command the README and the guides in docs/ show runs as written, in order, in a
scratch folder of its own per document; the long ones (training at full length, hour-long renders,
installs, a 7B model the machine cannot have) are listed below with the reason, and each of those
entries must still match a command of some document. A guide whose commands need an earlier step's
output (a study to score, a manifest to train on) shows that step itself.

The scratch folder sees the repository's .venv, tools/, data_prep/, configs/ and train/ through
links, so `.venv/bin/lmmeval ...` and `python tools/...` run as a reader at the repository root runs
them, without writing into the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *(ROOT / "docs" / name for name in (
    "scoring.md", "rendering.md", "data.md", "training.md", "evaluation.md", "api.md", "design.md"))]
LINKED = (".venv", "tools", "data_prep", "configs", "train")

# Command prefix -> why it is not run here (each has its own test or measurement where it can).
LONG = {
    "make demo": "its own test: tests/test_demo.py runs `make demo`",
    "make test": "the test suite itself",
    "make pretrain": "stage 0: about an hour on 2 cores",
    ".venv/bin/lmmeval synth data/raw --n 200": "the paper's protocol: 200 videos at 512 px, 60 fps, hours on 2 cores",
    ".venv/bin/lmmeval score renders/ --model ckpt/ --base /models/": "needs a trained 7B checkpoint and its base",
    "make cv": "five folds and a baseline: about 30 minutes on 2 cores after stage 0",
    "deepspeed train/": "a training stage at its config's length: minutes to hours (docs/training.md runs each stage for one step)",
    "python train/stage1_instruct.py --config configs/tiny/stage1.yaml --set base=runs/pretrain/base":
        "a training stage on stage 0's base (after make pretrain)",
    "torchrun --nproc_per_node 8": "eight ranks on a trained checkpoint; tests/test_cli_score.py scores with two ranks",
    ".venv/bin/lmmeval evaluate --model runs/qwen7b/": "needs a trained 7B checkpoint",
    ".venv/bin/lmmeval calibrate-ood --model ckpt/": "needs a trained checkpoint of one's own",
    ".venv/bin/python -m research.trust": "renders two studies and scores them: about 15 minutes",
    "python3 -m venv .venv": "the install, which make does (CI runs it from scratch)",
    ".venv/bin/pip install": "the install, which make does (CI runs it from scratch)",
}


def commands(path: Path) -> list[str]:
    """The commands of ``path``'s bash blocks, continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def _long(command: str) -> str | None:
    return next((why for prefix, why in LONG.items() if command.startswith(prefix)), None)


def test_every_long_entry_still_names_a_command():
    shown = [c for doc in DOCS for c in commands(doc)]
    stale = [prefix for prefix in LONG if not any(c.startswith(prefix) for c in shown)]
    assert not stale, f"LONG entries that match no command any more: {stale}"


def _runnable(doc: Path) -> tuple[str, ...]:
    return tuple(c for c in commands(doc) if not _long(c))


def _shared_prefixes() -> set[tuple[str, ...]]:
    """Command sequences that open more than one doc (most guides start with the same small synth)."""
    counts: dict[tuple[str, ...], int] = {}
    for doc in DOCS:
        run = _runnable(doc)
        for k in range(1, len(run) + 1):
            counts[run[:k]] = counts.get(run[:k], 0) + 1
    return {prefix for prefix, n in counts.items() if n > 1}


# The scratch folder's own files after an opening sequence several docs share (and that records no path
# of its folder), kept for the session: a doc that opens with the same commands, in the same order, from
# the same empty folder starts from a copy. The commands are deterministic (seeded), and each still ran
# as written, once, for the first doc that showed it.
_SNAPSHOTS: dict[tuple[str, ...], Path] = {}


def _own_files(scratch: Path) -> list[Path]:
    return [p for p in scratch.iterdir() if p.name not in LINKED]


def _restore(snapshot: Path, scratch: Path) -> None:
    for p in _own_files(scratch):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.copytree(snapshot, scratch, symlinks=True, dirs_exist_ok=True)


def _names_its_folder(scratch: Path) -> bool:
    """Whether a file written there records the scratch folder's own path (a results file's absolute
    input paths): a copy in another folder would point back at the first one."""
    marks = {str(scratch).encode(), str(scratch.resolve()).encode()}
    return any(mark in f.read_bytes() for p in _own_files(scratch) for f in ([p] if p.is_file() else p.rglob("*"))
               if f.is_file() and not f.is_symlink() for mark in marks)


def _snapshot(scratch: Path, snapshot: Path) -> None:
    snapshot.mkdir(parents=True)
    for p in _own_files(scratch):
        if p.is_dir():
            shutil.copytree(p, snapshot / p.name, symlinks=True)
        else:
            shutil.copy2(p, snapshot / p.name)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_shell_commands_run_as_written(doc, tmp_path, tmp_path_factory):
    scratch = tmp_path / "repo"
    scratch.mkdir()
    for name in LINKED:
        if (ROOT / name).exists():
            (scratch / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    shared, run = _shared_prefixes(), _runnable(doc)
    for k, command in enumerate(run):
        prefix = run[:k + 1]
        if prefix in _SNAPSHOTS:  # an earlier doc ran these same commands from an empty folder
            _restore(_SNAPSHOTS[prefix], scratch)
            continue
        # `python` as the README writes it is the project's environment's.
        argv = shlex.split(command)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        done = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{doc.name}: `{command}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        if prefix in shared and not _names_its_folder(scratch):
            snapshot = tmp_path_factory.mktemp("doc_prefix") / "files"
            _snapshot(scratch, snapshot)
            _SNAPSHOTS[prefix] = snapshot
    assert len(run) >= 2  # the short commands are the point of this test
