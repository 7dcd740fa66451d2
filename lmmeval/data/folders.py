"""Output folders that never destroy data: the rules `lmmeval prepare` and `import-gen3dhf` share.

An output folder may not be, contain or lie inside an input folder (writing it could replace or
unlink the inputs); an existing non-empty one is an earlier result, replaced only when asked. The
output is built in a hidden temporary sibling and renamed into place once complete, so an
interrupted or failed run leaves the earlier result as it was and nothing that looks complete
(the temporary folder is removed on failure; one left by a killed process is named ``.NAME.partial-*``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


def check_output_folder(out_dir: str | Path, inputs: dict[str, str | Path], overwrite: bool) -> None:
    """Refuse ``out_dir`` (``ValueError`` naming both folders) when it is, contains or lies inside one of
    ``inputs`` ({what: folder}), and when it is an existing non-empty folder unless ``overwrite``."""
    out = Path(out_dir).resolve()  # symbolic links followed: a link to the input is the input
    for what, folder in inputs.items():
        inp = Path(folder).resolve()
        if out == inp or out.is_relative_to(inp) or inp.is_relative_to(out):
            relation = "is" if out == inp else "lies inside" if out.is_relative_to(inp) else "contains"
            raise ValueError(f"output folder {out_dir} {relation} the {what} {folder}: writing it could replace "
                             "the input files; give an output folder outside the input")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out_dir} is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output folder {out_dir} is not empty (an earlier result?): give another folder, or "
                         "--overwrite (overwrite=True) to replace it once the new one is complete")


@contextlib.contextmanager
def staged_folder(out_dir: str | Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``out_dir`` to build the output in; on a clean exit it replaces
    ``out_dir`` (renamed into place, the earlier folder removed only then), on any error or interrupt it
    is removed and ``out_dir`` is untouched. Hard links and absolute symbolic links made inside it stay
    valid after the rename."""
    # Resolved: an output that is a symbolic link to a folder (on another disk, say) has that folder
    # replaced, and the link kept.
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not tempfile.mkdtemp: the folder keeps the user's umask (mkdtemp's is owner-only).
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:  # KeyboardInterrupt and SystemExit too: nothing half-built is left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # rename(2) cannot replace a non-empty folder: the earlier one steps aside first and is removed
    # once the new one is in place (killed in between, it is still there, under .NAME.replaced-*).
    aside = None
    if out.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
        os.rename(out, aside / out.name)
    os.rename(tmp, out)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
