# lmmeval — `make demo` and `make test` work on a fresh machine with only Python 3.11 and pip.
# Every target installs what it needs first (into .venv), so CI needs nothing else.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# Tests and the demo never touch a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# qwen-vl-utils reads this once at import: decode videos with decord.
export FORCE_QWENVL_VIDEO_READER := decord
# DeepSpeed JIT-compiles its CPU ops once; keep them in a stable cache.
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.torch_extensions

.PHONY: install demo test demo-checkpoint cv probe clean

install: $(STAMP)

# torch first, from its CPU wheel, then everything else with torch pinned by
# constraints.txt (otherwise pip swaps in a multi-GB CUDA build).
$(STAMP): pyproject.toml constraints.txt tools/torchvision_cpu_shim.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	@# The registry's torchvision is a CUDA build whose C extension cannot load
	@# against the CPU torch; install a lazy start-up hook only when that happens.
	@if ! $(PY) -c "import torchvision" >/dev/null 2>&1; then \
		echo "torchvision's C extension does not load here: installing tools/torchvision_cpu_shim.py"; \
		SP=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
		cp tools/torchvision_cpu_shim.py $$SP/ && echo "import torchvision_cpu_shim" > $$SP/torchvision_cpu_shim.pth; \
		$(PY) -c "import torchvision" ; \
	fi
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m lmmeval.demo --out demo_out

# Retrain the embedded demo checkpoint (lmmeval/assets/demo_checkpoint) with the
# project's own training scripts on a synthetic study, then evaluate it on another one.
demo-checkpoint: $(STAMP)
	$(PY) train/build_demo_checkpoint.py

# 5-fold cross-validation of the tiny preset and the CNN baseline on a synthetic study
# (about 40 minutes on 2 CPU cores); writes docs/results.md.
cv: $(STAMP)
	$(PY) train/cross_validate.py --steps 1000

# Which vision encoder learns the benchmark from scratch: a 2,000-video study, then the
# tiny Qwen2.5-VL vision tower vs a ResNet-18 (about 40 minutes on 2 CPU cores);
# writes docs/probe.{md,json,png}.
probe: $(STAMP)
	$(PY) -m lmmeval.cli synth runs/big/raw --n 2000 --size 112 --fps 8 --seconds 2 --workers 2 -q
	$(PY) -m lmmeval.cli prepare runs/big/raw runs/big/prepared --folds 5 -q
	$(PY) train/probe_backbones.py --manifest runs/big/prepared/manifest.jsonl --fold 0 \
		--encoders qwen-vit qwen-vit-wide resnet18 --epochs 6 --out docs/probe

clean:
	rm -rf $(VENV) demo_out runs .pytest_cache .torch_extensions
