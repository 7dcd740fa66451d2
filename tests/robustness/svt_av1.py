"""AV1 test files without side effects on the test process.

PyAV's AV1 encoder (libsvtav1) sets the calling thread to SCHED_FIFO, priority 99, when it may (as
root), and never sets it back. Every process started afterwards inherits a real-time policy: spinning
thread pools (torch's OpenMP, Mitsuba's LLVM) then starve the threads they wait on, and tests long
after the one that encoded hang or see no signal arrive. Encoding under this context manager puts
the policy back; tests/conftest.py fails any test that leaves it changed.
"""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def scheduling_kept():
    if not hasattr(os, "sched_getscheduler"):  # not Linux: nothing to keep
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)
