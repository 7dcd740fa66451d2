"""Render worker processes that stop when asked: frames are never rendered in the calling process.

``RenderPool`` renders every frame in worker processes (``lmmeval.render.worker``, one even for
``workers=1``), never in the calling process: there, Mitsuba's own SIGINT handling (see ``scene``)
would cut frames short, and a frame under way in Mitsuba's C++ code could not be stopped, where a
worker process can be ended at once. Each worker runs in a session of its own, which a terminal's
Ctrl-C does not reach. The parent waits on their sockets, where KeyboardInterrupt (Ctrl-C,
or SIGTERM as `lmmeval` turns it) lands at once; leaving the pool's ``with`` block by any exception
ends the workers (SIGTERM, then SIGKILL) before the exception goes on, so the caller removes its
partial files with no worker still writing. Should the parent die outright, the kernel ends them
(it ties them to the thread that started them: a pool is used within one thread's call).

Workers are started lazily (or by ``start``) and kept for the pool's life (several meshes, one
after the other). The first reports the Mitsuba variant it picked (``scene.pick_variant``) and its
note, printed once per process; a variant that renders over the whole machine (CUDA:
``scene.single_process``) gets that one worker only. Frames are asked for one at a time, ``AHEAD``
queued per worker, so progress moves with every frame and no worker waits for the next.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections import deque
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path

import numpy as np

AHEAD = 2  # frames asked of a worker before it answers the first: it never idles for a round trip
_NOTED: set[str] = set()  # notes printed by this process

# The worker imports this very lmmeval (the one this file belongs to), whatever the working folder
# or PYTHONPATH would find first. It blocks SIGINT first thing, before an import starts a thread
# (numpy's BLAS does), so that every thread of it inherits the block (see ``worker``).
_BOOT = ("import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); "
         f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
         "from lmmeval.render.worker import main; sys.exit(main(sys.argv[1:]))")


class RenderError(RuntimeError):
    """A frame could not be rendered (Mitsuba's error), or a worker ended unexpectedly."""


class VariantUnavailable(ValueError):
    """The variant ``LMMEVAL_RENDER_VARIANT`` forces does not load here: nothing can render."""


class RenderPool:
    """Up to ``workers`` render processes; ``render`` gives the frames of a mesh at given azimuths."""

    def __init__(self, workers: int = 1, prefer_gpu: bool = True):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.max_workers, self.prefer_gpu = workers, prefer_gpu
        self.variant: str | None = None  # known once the first worker is up
        self._workers: list[_Worker] = []

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.terminate()

    def start(self) -> str:
        """Start the first worker (if none is up) and return the variant it renders with. Raises
        ``VariantUnavailable`` for a forced variant that does not load, ``RenderError`` for a worker
        that does not start."""
        try:
            self._ready_workers(1)
        except RenderError:
            self.terminate()
            raise
        return self.variant

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        return [worker.process.pid for worker in self._workers]

    def render(self, head, azimuths, size: int, spp: int, seeds=None, progress=None) -> np.ndarray:
        """uint8 (n, size, size, 3) frames of ``head`` at ``azimuths``, frame i seeded by ``seeds[i]``
        (default i); ``progress(k)`` is called as k more frames are done. Raises ``RenderError``."""
        azimuths = np.asarray(azimuths, dtype=float)
        seeds = np.arange(len(azimuths)) if seeds is None else np.asarray(seeds)
        frames = np.empty((len(azimuths), size, size, 3), np.uint8)
        if not len(azimuths):
            return frames
        try:
            workers = self._ready_workers(len(azimuths))
            scene = None
            for worker in workers:
                if not worker.holds(head, size, spp):
                    scene = scene or pickle.dumps(("scene", head, size, spp), protocol=pickle.HIGHEST_PROTOCOL)
                    worker.send_bytes(scene)  # pickled once, for every worker
                    worker.scene = (head, size, spp)
            todo = deque(range(len(azimuths)))
            asked: dict[Connection, deque] = {worker.conn: deque() for worker in workers}  # frames, in order
            by_conn = {worker.conn: worker for worker in workers}

            def ask(worker: _Worker) -> None:
                while todo and len(asked[worker.conn]) < AHEAD:
                    i = todo.popleft()
                    worker.ask(i, seeds, azimuths)
                    asked[worker.conn].append(i)

            for worker in workers:
                ask(worker)
            while any(asked.values()):
                for conn in wait([c for c, pending in asked.items() if pending]):
                    worker = by_conn[conn]
                    frames[asked[conn].popleft()] = worker.answer()[0]
                    if progress:
                        progress(1)
                    ask(worker)
        except RenderError:
            self.terminate()  # the others' answers to this mesh must not reach the next one
            raise
        return frames

    def _ready_workers(self, wanted: int) -> list[_Worker]:
        if not self._workers:
            first = _Worker.start(self.prefer_gpu)
            try:
                self.variant, note = first.wait_ready()
            except BaseException:  # not yet among the pool's workers: ended here
                first.process.terminate()
                first.stop()
                raise
            self._workers.append(first)
            if note and note not in _NOTED:
                _NOTED.add(note)
                print(note, file=sys.stderr)
        from .scene import single_process

        limit = 1 if single_process(self.variant) else min(self.max_workers, wanted)
        started = [_Worker.start(self.prefer_gpu) for _ in range(limit - len(self._workers))]
        self._workers.extend(started)
        for worker in started:  # they start side by side
            worker.wait_ready()
        return self._workers[:limit]

    def close(self) -> None:
        """Let the workers finish and end (they end when their socket closes)."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.conn.close()
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.stop()

    def terminate(self) -> None:
        """End every worker now, whatever it is doing, and wait until each has."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            worker.stop()


class _Worker:
    """One worker process and the parent's end of its socket."""

    def __init__(self, process: subprocess.Popen, conn: Connection):
        self.process, self.conn = process, conn
        self.scene: tuple | None = None  # (head, size, spp) it renders now

    def holds(self, head, size: int, spp: int) -> bool:
        return self.scene is not None and self.scene[0] is head and self.scene[1:] == (size, spp)

    @classmethod
    def start(cls, prefer_gpu: bool) -> _Worker:
        ours, theirs = Pipe(duplex=True)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()), "1" if prefer_gpu else "0"],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=2,  # Mitsuba's messages go with the parent's, never into what it prints
                start_new_session=True)  # out of the terminal's process group: Ctrl-C reaches the parent only
        finally:
            theirs.close()
        return cls(process, ours)

    def wait_ready(self) -> tuple[str, str | None]:
        """(the variant the worker picked, its note), once it has Mitsuba loaded."""
        kind, *payload = self._receive()
        if kind == "error":  # a forced variant that does not load: it has ended
            self.process.wait()
            self.conn.close()
            raise VariantUnavailable(payload[0])
        if kind != "ready":
            raise RenderError(f"a render worker answered {kind!r} at start")
        return payload[0], payload[1]

    def ask(self, i: int, seeds: np.ndarray, azimuths: np.ndarray) -> None:
        """Ask for frame ``i``."""
        self.send_bytes(pickle.dumps(("frames", seeds[i:i + 1], azimuths[i:i + 1])))

    def send_bytes(self, message: bytes) -> None:
        try:
            self.conn.send_bytes(message)
        except (BrokenPipeError, ConnectionResetError):
            self._ended()

    def answer(self) -> np.ndarray:
        kind, payload = self._receive()
        if kind == "frames":
            return payload
        if kind == "interrupted":  # a SIGINT reached the worker itself: stop as for one here
            raise KeyboardInterrupt(payload)
        raise RenderError(payload)

    def _receive(self):
        try:
            return self.conn.recv()
        except (EOFError, ConnectionResetError):
            self._ended()

    def _ended(self):
        status = self.process.wait()
        raise RenderError(f"a render worker ended unexpectedly (exit status {status}; its error, if any, "
                          "is printed above)") from None

    def stop(self) -> None:
        """Wait for the worker to end (SIGKILL if SIGTERM was not enough); close the socket."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()
