"""The suite's guard on what subprocesses inherit (tests/conftest.py): a test that leaves a signal
ignored, a real-time policy or another umask behind fails, and the next test starts from the state
the run started with."""

import os
from pathlib import Path

pytest_plugins = ["pytester"]


def test_a_test_that_leaves_inherited_state_changed_fails_and_the_next_one_starts_clean(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import os, signal

        def test_leaves_sigterm_ignored_and_another_umask():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.umask(0o077)

        def test_starts_clean():
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_IGN
            mask = os.umask(0o077)
            os.umask(mask)
            assert mask != 0o077
        """
    )
    umask = os.umask(0o022)
    os.umask(umask)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    assert (f"changed what subprocesses inherit: ignored signals [] -> ['SIGTERM']; umask {oct(umask)} -> 0o77"
            in result.stdout.str())
