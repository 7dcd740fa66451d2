"""One render worker process: frames of one mesh at a time, asked for over a socket by its parent.

Started by ``lmmeval.render.pool.RenderPool`` (``main([FD, PARENT_PID, GPU])`` in a fresh interpreter)
in a session of its own, so that a terminal's Ctrl-C reaches the parent only: the parent ends its
workers and removes what they left unfinished. SIGINT is blocked here as well, in every thread:
Mitsuba installs a handler of its own while it renders, which would cut the frame (refused, see
``scene.FrameInterrupted``) or, under the LLVM variant, now and then deadlock the render. SIGTERM ends
the worker at once (the default), which is how the parent stops it. On Linux the kernel kills the
worker when its parent dies, even by SIGKILL (PR_SET_PDEATHSIG): no worker outlives its run.

Messages (pickled tuples) from the parent: ``("scene", head, size, spp)`` sets the mesh to render;
``("frames", seeds, azimuths)`` asks for frames. Answers: ``("ready", variant, note)`` once, at start
(``scene.pick_variant``'s; ``("error", text)`` instead where a forced variant does not load);
``("frames", uint8 array (n, size, size, 3))``, ``("error", text)`` or ``("interrupted", text)``.
The worker ends when its parent closes the socket.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Have the kernel send SIGKILL here when the parent dies; exit at once if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def serve(conn, prefer_gpu: bool) -> None:
    """Answer the parent's messages on ``conn`` until it closes it."""
    import numpy as np

    from .scene import FrameInterrupted, FrameRenderer, pick_variant

    try:
        variant, note = pick_variant(prefer_gpu)
    except ValueError as err:  # a forced variant that does not load here
        conn.send(("error", str(err)))
        return
    if variant.startswith("llvm"):  # one core, as a scalar worker: the pool runs one worker per core
        import drjit as dr

        dr.set_thread_count(1)
    conn.send(("ready", variant, note))
    renderer, failure = None, None
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is done (or gone)
            return
        if message[0] == "scene":
            _, head, size, spp = message
            renderer, failure = None, None
            try:
                renderer = FrameRenderer(head, size, spp, variant)
            except Exception as err:  # Mitsuba's errors: reported with the frames asked for next
                failure = f"{type(err).__name__}: {err}"
            del head, message  # the scene holds what it needs; the mesh's arrays can go
            continue
        _, seeds, azimuths = message
        try:
            if failure is not None:
                raise RuntimeError(failure)
            # Seeded by frame index: the same frames whatever the number of workers or threads.
            reply = ("frames", np.stack([renderer.render(float(a), seed=int(s)) for s, a in zip(seeds, azimuths)]))
        except FrameInterrupted as err:
            reply = ("interrupted", str(err))
        except Exception as err:
            reply = ("error", f"{type(err).__name__}: {str(err).strip()[:500]}")
        conn.send(reply)


def main(argv: list[str] | None = None) -> int:
    from multiprocessing.connection import Connection

    fd, parent, gpu = (argv if argv is not None else sys.argv[1:])
    # Blocked (again: the pool's boot line blocks it before any import starts a thread, and threads
    # inherit the mask) and ignored: no thread ever takes a SIGINT.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(int(parent))
    conn = Connection(int(fd))
    try:
        serve(conn, prefer_gpu=gpu == "1")
    except (BrokenPipeError, ConnectionResetError):  # the parent went away mid-answer
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
