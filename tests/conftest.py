"""Shared fixtures: one small synthetic study, rendered and prepared once per test session."""

from __future__ import annotations

import os

import pytest

# Tests never touch a model hub, and qwen-vl-utils must decode with decord: forced, not defaulted,
# so that a user's HF_HUB_OFFLINE=0 in the shell cannot send a test to the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"

def _scheduling():
    """This process's scheduling policy and priority (None where the OS has no such calls)."""
    if not hasattr(os, "sched_getscheduler"):
        return None
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


_SCHEDULING_AT_START = _scheduling()


@pytest.fixture(autouse=True)
def _scheduling_unchanged():
    """Fails a test that leaves the test process's scheduling policy changed, and puts it back. Every
    process started afterwards inherits it: a real-time policy left by an AV1 encoder (see
    tests/robustness/svt_av1.py) once made a later test hang and another see no signal arrive."""
    yield
    now = _scheduling()
    if now != _SCHEDULING_AT_START:
        policy, priority = _SCHEDULING_AT_START
        os.sched_setscheduler(0, policy, os.sched_param(priority))
        pytest.fail(f"this test (or a fixture it set up) changed the process's scheduling policy and "
                    f"priority from {_SCHEDULING_AT_START} to {now}", pytrace=False)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true",
                     help="also run the long end-to-end tests marked slow (make test and CI do)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (make test and CI do)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Small enough for CI (a few seconds), large enough for the statistics below to mean something.
SMALL_SET = dict(n=40, seed=0, size=112, fps=8, seconds=2.0, workers=1)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory):
    from lmmeval.synth import SynthConfig, synthesize

    return synthesize(tmp_path_factory.mktemp("raw"), SynthConfig(**SMALL_SET), progress=False)


@pytest.fixture(scope="session")
def prepared_manifest(synthetic_raw, tmp_path_factory):
    from lmmeval.data.prepare import prepare

    return prepare(synthetic_raw, tmp_path_factory.mktemp("prepared"), progress=False)


@pytest.fixture(scope="session")
def other_render_raw(tmp_path_factory):
    """The same 40 heads rendered at another protocol (128 px, 6 fps, 3 s)."""
    from lmmeval.synth import SynthConfig, synthesize

    protocol = dict(size=128, fps=6, seconds=3.0)
    return synthesize(tmp_path_factory.mktemp("raw128"), SynthConfig(**(SMALL_SET | protocol)), progress=False)


@pytest.fixture(scope="session")
def other_render(other_render_raw, tmp_path_factory):
    """``other_render_raw`` prepared the way ``prepared_manifest`` is."""
    from lmmeval.data.prepare import prepare

    return prepare(other_render_raw, tmp_path_factory.mktemp("prepared128"), progress=False)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """The tiny Qwen2.5-VL base (real architecture, random weights), built offline once."""
    from lmmeval.model.presets import save_base

    return save_base(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def tiny_assessor(tiny_base):
    """An untrained assessor on the tiny base, sampling small frames for speed."""
    from lmmeval.inference.assessor import Assessor
    from lmmeval.model.configuration import SamplingConfig

    return Assessor.from_base(tiny_base, device="cpu", sampling=SamplingConfig(max_pixels=112 * 112, max_frames=8))
