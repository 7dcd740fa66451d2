"""Shared fixtures: one small synthetic study, rendered and prepared once per test session."""

from __future__ import annotations

import os

import pytest

# Tests never touch a model hub, and qwen-vl-utils must decode with decord: forced, not defaulted,
# so that a user's HF_HUB_OFFLINE=0 in the shell cannot send a test to the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"


# What a process started by a test inherits from the test process, beyond its environment: a test
# that leaves one of these changed alters every later test's subprocesses. A real-time scheduling
# policy left by an AV1 encoder (see tests/robustness/svt_av1.py) once made a later test hang and
# another see no signal arrive.
_INHERITED_IGNORES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGCHLD")  # SIG_IGN survives exec


def _inherited() -> dict:
    import signal

    state = {"ignored signals": sorted(name for name in _INHERITED_IGNORES
                                       if signal.getsignal(getattr(signal, name)) == signal.SIG_IGN),
             "blocked signals": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
             "umask": oct(os.umask(0o022))}
    os.umask(int(state["umask"], 8))  # reading the umask sets it: put it back at once
    if hasattr(os, "sched_getscheduler"):  # Linux
        state["scheduling policy and priority"] = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
        state["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    return state


_INHERITED_AT_START = _inherited()


def _restore(name: str, value) -> None:
    import signal

    if name == "ignored signals":
        for signame in _INHERITED_IGNORES:
            signum = getattr(signal, signame)
            if signame in value:
                signal.signal(signum, signal.SIG_IGN)
            elif signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, signal.default_int_handler if signame == "SIGINT" else signal.SIG_DFL)
    elif name == "blocked signals":
        signal.pthread_sigmask(signal.SIG_SETMASK, set(value))
    elif name == "umask":
        os.umask(int(value, 8))
    elif name == "scheduling policy and priority":
        os.sched_setscheduler(0, value[0], os.sched_param(value[1]))
    elif name == "nice":
        os.setpriority(os.PRIO_PROCESS, 0, value)


@pytest.fixture(autouse=True)
def _inherited_state_unchanged():
    """Fails a test that leaves what subprocesses inherit changed, and puts it back."""
    yield
    now = _inherited()
    changed = {name: (was, now[name]) for name, was in _INHERITED_AT_START.items() if now[name] != was}
    for name, (was, _) in changed.items():
        try:
            _restore(name, was)
        except OSError:  # e.g. a raised nice value, which only root may lower again: reported below
            pass
    if changed:
        pytest.fail("this test (or a fixture it set up) changed what subprocesses inherit: " +
                    "; ".join(f"{name} {was} -> {now}" for name, (was, now) in changed.items()), pytrace=False)


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
