"""Decoding in separate processes, so that one input can never end a run.

Decoders are native code: a crafted or damaged file can make them abort (decord's
``std::bad_alloc``), crash or exhaust memory, which no ``except`` catches. ``DecodePool`` runs
``lmmeval.io.media.load_or_error`` in worker processes instead; a worker that dies takes only the
input it was decoding with it (that input gets an error naming the signal and the file) and is
replaced for the inputs after it.

The workers are fresh interpreters (``python -c``, like multiprocessing's spawn start method,
never fork: the parent holds torch's threads) that import this torch-free module and the media
module only, so they start in well under a second. They ignore SIGINT (Ctrl-C reaches the whole
process group; the parent decides), die with the parent (Linux PR_SET_PDEATHSIG, and in any case
at the end of their input pipe), and are killed by ``close`` (normal end, KeyboardInterrupt, or the
CLI's SIGTERM turned into one). A thread of the parent talks to them, so that decoding goes on
while the parent's main thread runs the model. Results come back by key; the caller keeps order.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from multiprocessing.connection import wait
from pathlib import Path

TARGET = "lmmeval.io.media:load_or_error"  # module:function each worker runs, as function(path, *args)
PER_WORKER = 16  # tasks queued to a worker at once: keeps it busy while the parent is in the model
_STARTUP_FAILURES = 3  # workers in a row that die before taking a task: an environment problem, raised
_HEADER = struct.Struct(">Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the lmmeval package
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); from lmmeval.io.decode_pool import serve; "
         "serve(sys.argv[2], int(sys.argv[3]))")


class DecodePool:
    """``workers`` processes decoding files: ``submit(key, path)``, then ``result(key)`` returns what
    ``TARGET(path, *args)`` returned, or ``(path, error message)`` where the worker died on it.

    Use as a context manager (or call ``close``): the workers are killed on the way out.
    """

    def __init__(self, workers: int, args: tuple = (), target: str | None = None):
        if workers < 1:
            raise ValueError(f"a decode pool needs at least one worker, got {workers}")
        self.size, self.args, self.target = workers, args, target or TARGET
        self._lock = threading.Condition()
        self._pending: collections.deque = collections.deque()  # (key, path) not yet given to a worker
        self._results: dict = {}
        self._workers: list[_Worker | None] = [None] * workers
        self._failure: BaseException | None = None  # the I/O thread's, raised in the caller
        self._closing = False
        self._startup_failures = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe already holds a wake-up
        self._thread = threading.Thread(target=self._serve, name="lmmeval-decode-pool", daemon=True)
        self._thread.start()
        # The last resort when a caller never closes the pool: no worker outlives it.
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    # ------------------------------------------------------------------ caller side
    def submit(self, key, path: str) -> None:
        with self._lock:
            self._raise_failure()
            self._pending.append((key, str(path)))
        self._wake()

    def result(self, key):
        """The result for ``key`` (submitted before), waiting for it."""
        with self._lock:
            while key not in self._results:
                self._raise_failure()
                if self._closing:
                    raise RuntimeError("the decode pool is closed")
                self._lock.wait()
            return self._results.pop(key)

    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        with self._lock:
            return [w.proc.pid for w in self._workers if w is not None]

    def close(self) -> None:
        """Stop the I/O thread and kill the workers (they hold nothing worth finishing)."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._lock:
            _kill_all(self._workers)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # full (a wake-up is pending) or closed (nothing to wake)
            pass

    def _raise_failure(self) -> None:
        if isinstance(self._failure, (OSError, ValueError)):  # workers cannot start, a bad limit setting
            raise self._failure
        if self._failure is not None:
            raise RuntimeError(f"the decode pool stopped: {self._failure!r}") from self._failure

    # ------------------------------------------------------------------ I/O thread
    def _serve(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing:
                        return
                    self._dispatch()
                    live = [w for w in self._workers if w is not None]
                ready = wait([w.out for w in live] + [self._wake_r])
                if self._wake_r in ready:
                    os.read(self._wake_r, 4096)
                for w in live:
                    if w.out in ready:
                        self._read(w)
        except BaseException as err:  # noqa: BLE001  (handed to the caller, who raises it)
            with self._lock:
                self._failure = err
                self._lock.notify_all()
        finally:
            with self._lock:
                _kill_all(self._workers)

    def _dispatch(self) -> None:
        """Hand pending tasks to the least busy workers, starting workers as needed (lock held)."""
        while self._pending:
            slot = min(range(self.size), key=lambda i: self._load(i))
            if self._load(slot) >= PER_WORKER:
                return
            if self._workers[slot] is None:
                self._workers[slot] = _Worker(self.target, self.args)
            worker = self._workers[slot]
            key, path = self._pending.popleft()
            if not worker.send(key, path):  # it died: _read sees its end and re-queues
                self._pending.appendleft((key, path))
                return

    def _load(self, slot: int) -> int:
        worker = self._workers[slot]
        return 0 if worker is None else len(worker.assigned)

    def _read(self, worker: _Worker) -> None:
        try:
            message = worker.receive()
        except EOFError:
            self._retire(worker)
            return
        with self._lock:
            if message[0] == "start":
                worker.current = message[1]
                worker.took_a_task = True
                self._startup_failures = 0
            else:  # ("done", key, result)
                _, key, result = message
                worker.current = None
                worker.assigned.pop(key, None)
                self._results[key] = result
                self._lock.notify_all()

    def _retire(self, worker: _Worker) -> None:
        """A worker's output ended: it died. Its task in progress gets the crash as its error;
        the tasks queued behind it go back to the front of the queue."""
        code = worker.proc.wait()
        detail = worker.stderr_tail()
        worker.close()
        with self._lock:
            self._workers[self._workers.index(worker)] = None
            if worker.current is not None:
                path = worker.assigned.pop(worker.current)
                self._results[worker.current] = (path, _crash_message(path, code, detail))
                self._lock.notify_all()
            elif not worker.took_a_task and not self._closing:
                self._startup_failures += 1
                if self._startup_failures >= _STARTUP_FAILURES:
                    raise OSError(f"decode worker processes exit as they start (status {code}): {detail}")
            self._pending.extendleft(reversed(list(worker.assigned.items())))
            worker.assigned.clear()


class _Worker:
    """One decode process and the tasks sent to it (in order)."""

    def __init__(self, target: str, args: tuple):
        from .media import FRAMES_ENV, PIXELS_ENV, decode_limits

        # The limits in force here, module constants included, are the worker's too.
        pixels, frames = decode_limits()
        env = dict(os.environ, **{PIXELS_ENV: str(pixels), FRAMES_ENV: str(frames)})
        self.errors = tempfile.TemporaryFile()  # the worker's stderr: its last words if it crashes
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, _PACKAGE_ROOT, target, str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, env=env,
                                     close_fds=True)
        self.out = self.proc.stdout.fileno()
        self.assigned: dict = {}  # key -> path, in the order sent
        self.current = None  # the key it is decoding
        self.took_a_task = False
        self._send(("setup", args))

    def send(self, key, path: str) -> bool:
        """Queue a task; False when the worker is gone."""
        if not self._send(("task", key, path)):
            return False
        self.assigned[key] = path
        return True

    def _send(self, message) -> bool:
        data = pickle.dumps(message)
        try:
            self.proc.stdin.write(_HEADER.pack(len(data)) + data)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def receive(self):
        return pickle.loads(_read_exactly(self.out, _HEADER.unpack(_read_exactly(self.out, _HEADER.size))[0]))

    def stderr_tail(self) -> str:
        """The end of what the worker wrote to stderr for its last input (one line)."""
        try:
            self.errors.seek(0)
            text = self.errors.read()[-4000:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " / ".join(line.strip() for line in text.splitlines() if line.strip())[-300:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.errors):
            try:
                f.close()
            except (OSError, ValueError):
                pass


def _kill_all(workers: list) -> None:
    for i, worker in enumerate(workers):
        if worker is not None:
            worker.kill()
            workers[i] = None


def _crash_message(path: str, code: int, detail: str) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        how = f"decoder crashed (signal {-code}, {name})"
    else:
        how = f"decoder process exited (status {code})"
    said = f"; it said: {detail}" if detail else ""
    return f"{path}: {how} reading this file; the run goes on without it{said}"


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------- worker side
def serve(target: str, parent: int) -> None:
    """A worker's life: ``("setup", args)``, then ``("task", key, path)`` messages on stdin, each
    answered with ``("start", key)`` and ``("done", key, target(path, *args))`` on stdout, until stdin
    ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with(parent)
    module, _, name = target.partition(":")
    function = getattr(__import__(module, fromlist=[name]), name)
    # The protocol gets its own descriptor; anything a library prints to stdout goes to stderr.
    out = os.dup(1)
    os.dup2(2, 1)
    args: tuple = ()
    while True:
        try:
            message = pickle.loads(_read_exactly(0, _HEADER.unpack(_read_exactly(0, _HEADER.size))[0]))
        except EOFError:
            return  # the parent closed the pipe, or died
        if message[0] == "setup":
            args = message[1]
            continue
        _, key, path = message
        _forget_stderr()
        _write(out, ("start", key))
        try:
            data = pickle.dumps(("done", key, function(path, *args)))
        except Exception as err:  # noqa: BLE001  (the target's own failure is that input's error)
            data = pickle.dumps(("done", key, (path, f"{path}: decoding failed ({type(err).__name__}: {err})")))
        os.write(out, _HEADER.pack(len(data)))
        _write_all(out, data)


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies (a SIGKILL'd parent runs no clean-up)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; elsewhere the end of stdin stops the worker
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


def _forget_stderr() -> None:
    """Start the stderr file afresh for each input, so that a crash report shows that input's words."""
    try:
        os.ftruncate(2, 0)
        os.lseek(2, 0, os.SEEK_SET)
    except OSError:  # not a regular file (run by hand): nothing to trim
        pass


def _write(fd: int, message) -> None:
    data = pickle.dumps(message)
    _write_all(fd, _HEADER.pack(len(data)) + data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
