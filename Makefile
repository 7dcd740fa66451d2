# lmmeval — `make demo` and `make test` work on a fresh machine with only Python 3.11 and pip.
# Every target installs what it needs first (into .venv), so CI needs nothing else.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
# Tests and the demo never touch a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# qwen-vl-utils reads this once at import: decode videos with decord.
export FORCE_QWENVL_VIDEO_READER := decord
# DeepSpeed JIT-compiles its CPU ops once; keep them in a stable cache.
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.torch_extensions

.PHONY: install lock demo test test-fast demo-checkpoint pretrain cv cv-renders cv-scratch probe gpu-wheels gpu-check check-7b clean

install: $(STAMP)

# Everything comes from the lock (requirements.lock, see `lock` below), each file checked against its
# hash: pip first (its pin and hashes cut from the lock: the venv's own pip is older and does not take
# hashes from a constraints file), then every other package without resolving anything (the
# lock is the resolution; it pins torch==2.13.0+cpu, the local CPU wheel, by hash, so pip cannot swap in
# a multi-GB CUDA build), deepspeed's source build getting its setuptools from the lock too. The project
# itself last, offline: pip resolves its whole tree against what is installed, so this fails if
# pyproject.toml (or any locked package) asks for something the lock does not hold. (Not `pip check`:
# it rejects decord's wheel, whose metadata carries a cp36 tag, though it works.)
$(STAMP): pyproject.toml $(LOCK) packaging/torchvision_cpu_shim.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	awk '/^[^ #]/ {keep = /^pip==/} keep' $(LOCK) | $(PIP) install --quiet --no-deps -r /dev/stdin
	$(PIP) install --quiet --no-deps --require-hashes --build-constraint $(LOCK) -r $(LOCK)
	$(PIP) install --quiet --no-index --no-build-isolation -e '.[dev]' || \
		{ echo "$(LOCK) lacks a package that is asked for: run make lock"; exit 1; }
	@# The registry's torchvision is a CUDA build whose C extension cannot load
	@# against the CPU torch; install a lazy start-up hook only when that happens.
	@if ! $(PY) -c "import torchvision" >/dev/null 2>&1; then \
		echo "torchvision's C extension does not load here: installing packaging/torchvision_cpu_shim.py"; \
		SP=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
		cp packaging/torchvision_cpu_shim.py $$SP/ && echo "import torchvision_cpu_shim" > $$SP/torchvision_cpu_shim.pth; \
		$(PY) -c "import torchvision" ; \
	fi
	touch $(STAMP)

# The lock: every package `make install` puts in .venv (the installer and build backend included),
# pinned with its hashes, for Python 3.11 on Linux x86-64 with the CPU torch (constraints.txt). `make
# lock` regenerates it with pip-tools, from pyproject.toml's [dev] extra, keeping the pins it already
# holds, then derives tools/gpu_wheels.txt from it; a new release of anything changes nothing until
# then. To move pins: `make lock LOCK_ARGS='-P transformers'` (one package) or `LOCK_ARGS=--upgrade`
# (all), then `make test`. pip-tools lives in a venv of its own (build/lock-tools), not in .venv.
LOCK_TOOLS := build/lock-tools
LOCK_EXTRA := pip 'setuptools>=68' wheel
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/pip install --quiet pip==26.3 pip-tools==7.7.0; }
	@$(LOCK_TOOLS)/bin/python -c "import platform, sys; sys.exit(None if sys.version_info[:2] == (3, 11) \
		and sys.platform == 'linux' and platform.machine() == 'x86_64' else \
		'make lock: the lock is for Python 3.11 on Linux x86-64; set PYTHON to such an interpreter')"
	printf '%s\n' $(LOCK_EXTRA) | CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile --quiet \
		--no-config --generate-hashes --extra dev -c constraints.txt --unsafe-package lmmeval --strip-extras \
		--no-emit-find-links --no-emit-index-url $(LOCK_ARGS) -o $(LOCK) pyproject.toml -
	$(LOCK_TOOLS)/bin/python tools/gpu_wheels.py

# Every test, the long end-to-end ones (marked slow) included: what CI runs.
test: $(STAMP)
	$(PY) -m pytest -q --slow

# The quick tier for the edit-test loop (about half the time): the slow tests are skipped.
test-fast: $(STAMP)
	$(PY) -m pytest -q

# The demo's folder (a rerun replaces a folder an earlier demo wrote, and refuses any other).
DEMO_OUT ?= demo_out
demo: $(STAMP)
	$(PY) -m lmmeval.demo --out $(DEMO_OUT)

# The cross-validation study: 400 videos (seed 0), the paper's 5 generator-stratified folds.
CV_MANIFEST       := runs/cv/prepared/manifest.jsonl
# The same 400 heads rendered at 512 px (the paper's frame size; 8 fps, 2 s keeps it to ~20 minutes
# on 2 cores), for `make cv-renders`: trained on with the 112-px render, and tested on for the
# held-out heads of each fold. Its saliency maps are smoothed over the same
# share of the frame as the 112-px study's (sigma 5 px at 112 -> 22.86 px at 512), so that both
# renders of a head teach stage 3 the same map.
CV_RENDER_512     := runs/cv512/prepared/manifest.jsonl
# Stage 0's corpus: two 2,000-video studies, seeds 1 and 3 (seed 0 is the study, seed 2 the demo's
# unseen test videos), so disjoint from both.
PRETRAIN_MANIFEST  := runs/pretrain/prepared/manifest.jsonl
PRETRAIN_MANIFEST2 := runs/pretrain2/prepared/manifest.jsonl
# Written last by train/stage0_vision.py, so an interrupted run is not taken as done.
PRETRAINED_BASE   := runs/pretrain/base/vision_pretrain.json
SMALL_VIDEOS      := --size 112 --fps 8 --seconds 2 --workers 2 -q

$(CV_MANIFEST): | $(STAMP)
	$(PY) -m lmmeval.cli synth runs/cv/raw --n 400 --seed 0 $(SMALL_VIDEOS)
	$(PY) -m lmmeval.cli prepare runs/cv/raw runs/cv/prepared --folds 5 -q

$(CV_RENDER_512): | $(STAMP)
	$(PY) -m lmmeval.cli synth runs/cv512/raw --n 400 --seed 0 --size 512 --fps 8 --seconds 2 --workers 2 -q
	$(PY) -m lmmeval.cli prepare runs/cv512/raw runs/cv512/prepared --folds 5 --sigma 22.86 -q

$(PRETRAIN_MANIFEST): | $(STAMP)
	$(PY) -m lmmeval.cli synth runs/pretrain/raw --n 2000 --seed 1 $(SMALL_VIDEOS)
	$(PY) -m lmmeval.cli prepare runs/pretrain/raw runs/pretrain/prepared --folds 5 -q

$(PRETRAIN_MANIFEST2): | $(STAMP)
	$(PY) -m lmmeval.cli synth runs/pretrain2/raw --n 2000 --seed 3 $(SMALL_VIDEOS)
	$(PY) -m lmmeval.cli prepare runs/pretrain2/raw runs/pretrain2/prepared --folds 5 -q

# Stage 0 (tiny preset): distil a ResNet-18 into the vision tower, scored on the CV study as it
# goes (about an hour on 2 CPU cores with the corpus: 6 min rendering with 2 workers, 50 min training);
# writes docs/results/vision_pretrain/vision_pretrain.{md,json,png}.
$(PRETRAINED_BASE): $(PRETRAIN_MANIFEST) $(PRETRAIN_MANIFEST2) $(CV_MANIFEST) configs/tiny/stage0_vision.yaml
	$(PY) train/stage0_vision.py --config configs/tiny/stage0_vision.yaml \
		--manifest $(PRETRAIN_MANIFEST) $(PRETRAIN_MANIFEST2) --out runs/pretrain/base --eval-manifest $(CV_MANIFEST) --report docs/results/vision_pretrain/vision_pretrain

pretrain: $(PRETRAINED_BASE)

# Retrain the embedded demo checkpoint (lmmeval/assets/demo_checkpoint) with the
# project's own training scripts on a synthetic study, stage 1 starting from stage 0's
# base, then evaluate it on another study (docs/results/demo_checkpoint/). Below the variables it
# depends on: make expands a rule's prerequisites where it reads the rule.
demo-checkpoint: $(PRETRAINED_BASE) $(CV_MANIFEST) | $(STAMP)
	$(PY) train/build_demo_checkpoint.py --base runs/pretrain/base --manifest $(CV_MANIFEST)

# 5-fold cross-validation of the tiny preset (stage 1 on stage 0's base) and the CNN baseline
# (about 30 minutes on 2 CPU cores after `make pretrain`); writes docs/results/cv/results.{md,json},
# the generated table that docs/results.md discusses.
cv: $(PRETRAINED_BASE) $(CV_MANIFEST)
	$(PY) train/cross_validate.py --steps 1000 --manifest $(CV_MANIFEST) --base runs/pretrain/base

# The same with the study's 512-px render as a second training render (`--renders`); each fold is
# also tested on its held-out heads at 512 px (about 75 minutes on 2 CPU cores after `make pretrain`);
# writes docs/results/cv_renders/results.{md,json}. An experiment: `make cv` and the demo checkpoint do not
# use the second render (docs/results.md says why).
cv-renders: $(PRETRAINED_BASE) $(CV_MANIFEST) $(CV_RENDER_512)
	$(PY) train/cross_validate.py --steps 1000 --manifest $(CV_MANIFEST) --base runs/pretrain/base \
		--renders $(CV_RENDER_512) --work runs/cv_renders --results docs/results/cv_renders/results.md

# The same without stage 0 (the tiny base's random tower): docs/results/cv_scratch_tower/results.{md,json}.
cv-scratch: $(CV_MANIFEST)
	$(PY) train/cross_validate.py --steps 1000 --manifest $(CV_MANIFEST) --work runs/cv-scratch \
		--results docs/results/cv_scratch_tower/results.md

# Which vision encoder learns the benchmark from scratch: a 2,000-video study, then the
# tiny Qwen2.5-VL vision tower vs a ResNet-18 (about 40 minutes on 2 CPU cores);
# writes docs/results/probe/probe.{md,json,png}.
probe: $(STAMP)
	$(PY) -m lmmeval.cli synth runs/big/raw --n 2000 $(SMALL_VIDEOS) --overwrite
	$(PY) -m lmmeval.cli prepare runs/big/raw runs/big/prepared --folds 5 -q --overwrite
	$(PY) -m research.probe --manifest runs/big/prepared/manifest.jsonl --fold 0 \
		--encoders qwen-vit qwen-vit-wide resnet18 --epochs 6 --out docs/results/probe/probe

# The wheels the GPU machine lacks (tools/gpu_wheels.txt, generated from the lock by `make lock`), for
# Python 3.12 on x86-64, into .whl/: carried along to run `make gpu-check` there (it has no network).
WHEEL_PLATFORMS := --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64
gpu-wheels: $(STAMP)
	$(PY) tools/gpu_wheels.py --check
	mkdir -p .whl
	grep -v -e '^#' -e '^deepspeed' tools/gpu_wheels.txt | xargs $(PIP) download -q --no-deps --only-binary=:all: \
		$(WHEEL_PLATFORMS) -d .whl
	$(PIP) wheel -q --no-deps --no-build-isolation $$(grep '^deepspeed' tools/gpu_wheels.txt) -w .whl
	@du -sh .whl

# The real 7B shape on one H100/H200 in under 10 minutes: bench, pytest -m gpu, ten steps of each
# stage under ZeRO-2; writes docs/results/gpu_check/7b_<gpu>.json (tools/gpu_check.sh says what and how).
gpu-check:
	bash tools/gpu_check.sh

# The exact 7B shape in bfloat16 on a CPU through the real commands (not in CI: about 22 GB of memory
# and 15 minutes on 2 cores): score a video, a stage-2 step, save and reload; writes docs/results/check_7b/check_7b.json.
check-7b: $(STAMP)
	$(PY) tools/check_7b.py --out docs/results/check_7b/check_7b.json

clean:
	rm -rf $(VENV) demo_out runs .pytest_cache .torch_extensions .whl
