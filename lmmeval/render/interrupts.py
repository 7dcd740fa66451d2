"""An interrupt that a library swallowed is raised again.

Ctrl-C (and SIGTERM, which `lmmeval` turns into one) arrives as KeyboardInterrupt wherever the main
thread happens to be. Some libraries catch every exception there: trimesh, for one, catches
``BaseException`` in dozens of places (vertex normals among them) and carries on. Inside
``InterruptGuard`` the handlers of SIGINT and SIGTERM also note the signal, and ``check()`` raises
KeyboardInterrupt for a signal that came and whose exception did not get through.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGuard:
    """A ``with`` block whose ``check()`` raises KeyboardInterrupt if SIGINT or SIGTERM arrived in it.

    Only Python-level handlers are wrapped (the default SIGINT one, or one the caller set): a signal
    left to its default action (SIGTERM outside `lmmeval`) ends the process without asking. Off the
    main thread, where no handler can be set, ``check()`` never raises."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                previous = signal.getsignal(sig)
                if callable(previous):
                    self._previous[sig] = previous
                    signal.signal(sig, self._noting(previous))
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _noting(self, previous):
        def handler(signum, frame):
            self.received = signum
            previous(signum, frame)  # raises KeyboardInterrupt, as it would have

        return handler

    def check(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received}")
