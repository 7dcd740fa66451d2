"""Writes tools/gpu_wheels.txt from requirements.lock: the wheels the GPU machine lacks, pinned as the lock pins them.

The GPU machine (`make gpu-check`) has no network and only some of this project's dependencies
preinstalled; `make gpu-wheels` carries the others over as wheels. They must be the versions the
project is tested with here, which are the lock's: so the list is generated from the lock (`make lock`
runs this), never edited by hand, and the test suite checks that the two files agree.

    python tools/gpu_wheels.py           # rewrite tools/gpu_wheels.txt from requirements.lock
    python tools/gpu_wheels.py --check   # exit 1, naming each difference, if the two disagree

Standard library only: it runs with whichever Python is at hand (the lock's tool venv, .venv, CI's).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
GPU_LIST = ROOT / "tools" / "gpu_wheels.txt"

# What `make gpu-check` imports that the GPU machine (Python 3.12; torch, transformers, peft, accelerate,
# timm, torchvision, scipy, matplotlib, numpy, einops, msgpack, ninja, psutil, py-cpuinfo preinstalled)
# lacks: the video readers, the CNN baseline, DeepSpeed and the pydantic stack DeepSpeed's config needs.
GPU_MACHINE_LACKS = ("qwen-vl-utils", "decord", "av", "segmentation-models-pytorch", "deepspeed", "hjson",
                     "pydantic", "pydantic-core", "annotated-types", "typing-inspection")

HEADER = """\
# Generated from requirements.lock by tools/gpu_wheels.py (`make lock`): do not edit by hand.
# What `make gpu-check` needs that the GPU machine (Python 3.12, torch, transformers, peft, timm,
# torchvision, scipy, matplotlib... preinstalled; no network) lacks, pinned as the lock pins them.
# `make gpu-wheels` downloads them (deepspeed is built here: it ships as source only, and its ops are
# compiled on first use there) into .whl/.
"""

# A pin at the start of a line: `name==version`, then a line continuation or the end (the lock's
# hashes and `# via` notes sit on the indented lines below it).
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def canonical(name: str) -> str:
    """The name as the package index compares it (PEP 503): `pydantic_core` and `Pydantic-Core` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of every `name==version` line of a lock or of the GPU list."""
    pins: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        match = _PIN.match(line)
        if not match:
            continue
        name = canonical(match.group(1))
        if name in pins:
            raise ValueError(f"{path}:{number}: {match.group(1)} is pinned twice")
        pins[name] = match.group(2)
    return pins


def render(lock: Path = LOCK) -> str:
    """The text of tools/gpu_wheels.txt for this lock."""
    pins = read_pins(lock)
    missing = [name for name in GPU_MACHINE_LACKS if name not in pins]
    if missing:
        raise ValueError(f"{lock}: no pin for {', '.join(missing)}, which the GPU machine needs carried "
                         "(is it still a dependency? then run `make lock`)")
    return HEADER + "".join(f"{name}=={pins[name]}\n" for name in GPU_MACHINE_LACKS)


def drift(lock: Path = LOCK, gpu_list: Path = GPU_LIST) -> list[str]:
    """Each way the GPU list differs from what the lock implies, one line each; empty when they agree."""
    wanted = read_pins(lock)
    wanted = {name: wanted.get(name) for name in GPU_MACHINE_LACKS}
    listed = read_pins(gpu_list)
    problems = []
    for name, version in wanted.items():
        if version is None:
            problems.append(f"{name}: not pinned in {lock}")
        elif name not in listed:
            problems.append(f"{name}: {version} in {lock}, missing from {gpu_list}")
        elif listed[name] != version:
            problems.append(f"{name}: {version} in {lock}, {listed[name]} in {gpu_list}")
    problems += [f"{name}: in {gpu_list}, not among the packages the GPU machine lacks"
                 for name in listed if name not in wanted]
    return problems


def write(lock: Path = LOCK, gpu_list: Path = GPU_LIST) -> None:
    """Rewrite the GPU list from the lock; through a temporary name, so a stopped run leaves the old list."""
    text = render(lock)
    tmp = gpu_list.with_name(gpu_list.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, gpu_list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if the list and the lock differ")
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--out", type=Path, default=GPU_LIST, help="the GPU list (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = drift(args.lock, args.out)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print(f"{args.out} does not match {args.lock}: run `python tools/gpu_wheels.py`", file=sys.stderr)
            return 1 if problems else 0
        write(args.lock, args.out)
    except (OSError, ValueError) as error:
        print(f"gpu_wheels: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
