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

Workers are started lazily and kept for the pool's life (several meshes, one after the other). The
first reports the Mitsuba variant it picked; a variant that renders over the whole machine (CUDA,
LLVM: ``scene.single_process``) gets that one worker only.
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


# The worker imports this very lmmeval (the one this file belongs to), whatever the working folder
# or PYTHONPATH would find first.
_BOOT = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
         "from lmmeval.render.worker import main; sys.exit(main(sys.argv[1:]))")


class RenderError(RuntimeError):
    """A frame could not be rendered (Mitsuba's error), or a worker ended unexpectedly."""


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
            # Chunks of a few frames: the progress moves as they finish, and a slow chunk holds no one up.
            chunks = deque(np.array_split(np.arange(len(azimuths)), min(len(azimuths), 4 * len(workers))))
            busy: dict[Connection, tuple[_Worker, np.ndarray]] = {}
            for worker in workers:
                if chunks:
                    busy[worker.conn] = (worker, worker.ask(chunks.popleft(), seeds, azimuths))
            while busy:
                for conn in wait(list(busy)):
                    worker, chunk = busy.pop(conn)
                    frames[chunk] = worker.answer()
                    if progress:
                        progress(len(chunk))
                    if chunks:
                        busy[conn] = (worker, worker.ask(chunks.popleft(), seeds, azimuths))
        except RenderError:
            self.terminate()  # the others' answers to this mesh must not reach the next one
            raise
        return frames

    def _ready_workers(self, wanted: int) -> list[_Worker]:
        if not self._workers:
            self._workers.append(_Worker.start(self.prefer_gpu))
            self.variant = self._workers[0].wait_ready()
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

    def wait_ready(self) -> str:
        """The variant the worker picked, once it has Mitsuba loaded."""
        kind, variant = self._receive()
        if kind != "ready":
            raise RenderError(f"a render worker answered {kind!r} at start")
        return variant

    def ask(self, chunk: np.ndarray, seeds: np.ndarray, azimuths: np.ndarray) -> np.ndarray:
        self.send_bytes(pickle.dumps(("frames", seeds[chunk], azimuths[chunk])))
        return chunk

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
