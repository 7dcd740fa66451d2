"""What an inference user's imports pull in: `import lmmeval` and `from lmmeval import Assessor` load
neither training, plotting, DeepSpeed nor the synthetic renderer (checked in a fresh interpreter)."""

import json
import subprocess
import sys

HEAVY = ("deepspeed", "matplotlib", "lmmeval.synth", "lmmeval.training", "research")


def _loaded(modules: set[str], packages) -> list[str]:
    """The modules of ``packages`` (each a package or module name) among ``modules``."""
    return sorted(m for m in modules for p in packages if m == p or m.startswith(p + "."))


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_lmmeval_is_light():
    loaded = _modules_after("import lmmeval")
    assert not _loaded(loaded, HEAVY + ("torch", "transformers", "lmmeval.inference"))


def test_the_assessor_imports_no_training_plotting_or_renderer():
    loaded = _modules_after("from lmmeval import Assessor")
    assert "lmmeval.inference.assessor" in loaded and "torch" in loaded  # the import did happen
    assert not _loaded(loaded, HEAVY)
