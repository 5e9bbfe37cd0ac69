"""The parent side of the grader's worker processes (polaris_lib/grading/worker.py): a pool.

The parent kills and replaces any worker that spends more than ``timeout_s + grace_s`` of CPU time
on one task (the hard bound on math-verify, RECIPE §8), or that misses a generous wall-clock
backstop (``WALL_BACKSTOP`` times that): a worker that only waited for a CPU on a busy machine is
not killed, so verdicts do not depend on load. It is one driver thread per worker pulling jobs
from a shared queue, so callers may submit from any thread; workers start lazily and restart after
a kill. In a forked child (``os.fork``, multiprocessing's ``fork``) the pool and the forkserver
belong to the parent: the child forgets both and starts its own on first use.

A worker that cannot start (it exits or raises while starting, or misses ``STARTUP_TIMEOUT_S``)
fails every job with one ``WorkerStartupError``, which the grader raises in the caller.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field

from polaris_lib.grading.worker import ERROR, GOLD_UNPARSEABLE, TIMEOUT, worker_main

STARTUP_TIMEOUT_S = 120.0
WALL_BACKSTOP = 10.0  # wall-clock kill at this many times the CPU bound (a starved worker)
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_MAIN_GUARD_HINT = (
    "multiprocessing's {method} start method re-imports the script that started Python ({path}) "
    "in every grading worker before it runs; a script whose top-level code is not under "
    '`if __name__ == "__main__":` runs again there (and here it exited or raised). Put the '
    "script's top-level code under that guard."
)


class WorkerStartupError(RuntimeError):
    """A grading worker exited, raised or hung while starting: no answer can be graded."""


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def _main_script() -> str | None:
    """The path multiprocessing re-imports in forkserver/spawn children, if any."""
    import sys

    main = sys.modules.get("__main__")
    if main is None or getattr(getattr(main, "__spec__", None), "name", None):
        return None  # `python -m pkg`: children import the package's __main__ by name, skipped
    return getattr(main, "__file__", None)


@dataclass
class Job:
    """Answers to check against one gold; results[i] = (score, reason, seconds) when done."""

    golds: tuple[str, ...]
    answers: list[str]
    on_done: object  # callable(job) invoked by the driver thread
    index: list = field(default_factory=list)  # caller's positions of the answers
    gold_ok: bool | None = None
    gold_exact: frozenset = frozenset()  # gold forms that, boxed as an answer, verify as correct
    results: list = field(default_factory=list)
    error: BaseException | None = None  # set when no worker could start: the caller raises it


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx, timeout_s: float, memory_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, timeout_s, memory_mb), daemon=True)
        try:
            self.proc.start()
        except Exception as exc:  # e.g. started while this process is itself still bootstrapping
            self.conn.close()
            raise WorkerStartupError(f"grading worker could not be started: {exc!r}") from exc
        finally:
            child.close()
        self.cpu = 0.0  # the worker's CPU seconds at its last message
        # forkserver/spawn children re-import the parent's __main__ script (with its torch import):
        # wait for that with a generous bound, so no grading deadline ever includes start-up.
        msg = None
        try:
            if self.conn.poll(STARTUP_TIMEOUT_S):
                msg = self.conn.recv()
        except (EOFError, OSError):
            pass
        if not (isinstance(msg, tuple) and msg[:1] == ("ready",)):
            self.kill()
            raise WorkerStartupError(self._why_not_started(ctx, msg))
        self.cpu = msg[1]

    def _why_not_started(self, ctx, msg) -> str:
        code = self.proc.exitcode
        if code is None:
            what = f"did not start within {STARTUP_TIMEOUT_S:.0f} s"
        else:
            what = f"exited while starting (exit code {code})"
        text = f"grading worker {what}"
        if msg is not None:
            text += f"; it sent {msg!r}"
        method, path = ctx.get_start_method(), _main_script()
        if method in ("forkserver", "spawn") and path:
            text += ". Likely cause: " + _MAIN_GUARD_HINT.format(method=method, path=path)
        return text

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """A lazily started, reusable set of grading workers, each fed by its own driver thread."""

    def __init__(
        self,
        processes: int,
        timeout_s: float,
        grace_s: float = 0.5,
        start_method: str = "forkserver",
        memory_mb: int = 4096,
    ):
        self.processes, self.timeout_s, self.grace_s = processes, timeout_s, grace_s
        self.soft_timeout_s = timeout_s  # the worker's own timer; the parent kills at timeout+grace
        self.memory_mb = memory_mb
        self.ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # Workers fork from a server that already imported math-verify: a replacement for a
            # killed worker starts in milliseconds, and none inherits torch's threads from the parent.
            self.ctx.set_forkserver_preload(["polaris_lib.grading.warmup"])
        self.jobs: queue.Queue = queue.Queue()
        self.kills = 0  # workers killed for missing the hard bound (or found dead)
        self._threads: list[threading.Thread] = []
        self._workers: list[_Worker | None] = [None] * processes
        self._lock = threading.Lock()
        self._failure: WorkerStartupError | None = None
        _LIVE_POOLS.add(self)

    def start(self, wait: bool = False) -> None:
        """Start the driver threads, each spawning its worker now (in parallel); optionally wait."""
        with self._lock:
            if not self._threads:
                self._ready = [threading.Event() for _ in range(self.processes)]
                for i in range(self.processes):
                    t = threading.Thread(target=self._drive, args=(i,), daemon=True)
                    t.start()
                    self._threads.append(t)
            ready = self._ready
        for event in ready if wait else ():
            event.wait(STARTUP_TIMEOUT_S)

    def submit(self, job: Job) -> None:
        """Queue a job; a driver thread calls job.on_done(job) when it is done."""
        self.start()
        self.jobs.put(job)

    def close(self) -> None:
        """Stop the driver threads and kill the workers; the pool restarts if used again."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self.jobs.put(None)
        for t in threads:
            t.join(timeout=10)
        for i, w in enumerate(self._workers):
            if w is not None:
                w.kill()
                self._workers[i] = None
        self._failure = None  # a later use tries to start workers again

    def _worker(self, i: int) -> _Worker:
        if self._workers[i] is None or not self._workers[i].proc.is_alive():
            if self._workers[i] is not None:
                self._workers[i].kill()
            self._workers[i] = _Worker(self.ctx, self.soft_timeout_s, self.memory_mb)
        return self._workers[i]

    def _replace(self, i: int) -> None:
        self.kills += 1
        self._workers[i].kill()
        self._workers[i] = None

    def _drive(self, i: int) -> None:
        try:
            self._worker(i)
        except WorkerStartupError as exc:
            self._failure = exc  # every job fails with it: the caller raises, nothing hangs
        except BaseException as exc:  # noqa: BLE001 - a driver must never die with jobs queued
            self._failure = WorkerStartupError(f"grading worker could not be started: {exc!r}")
        finally:
            self._ready[i].set()
        while (job := self.jobs.get()) is not None:
            try:
                if self._failure is not None:
                    job.error = self._failure
                else:
                    self._run(i, job)
            except WorkerStartupError as exc:  # a replacement for a killed worker failed
                self._failure = job.error = exc
            except BaseException:  # noqa: BLE001 - a driver must never die with a job pending
                job.results += [(0, ERROR, 0.0)] * (len(job.answers) - len(job.results))
            finally:
                job.on_done(job)

    def _recv(self, i: int, t0: float) -> tuple[tuple | None, str | None]:
        """(message, None) from worker i, or (None, TIMEOUT/ERROR) if it missed the bound or died.

        The bound is the worker's CPU time since its last message (it cannot use CPU faster than
        wall time, so each wait is at most the CPU budget left); a worker that was only waiting for
        a CPU keeps going until the wall-clock backstop.
        """
        w = self._worker(i)
        why = TIMEOUT
        budget = self.timeout_s + self.grace_s
        backstop = t0 + WALL_BACKSTOP * budget
        used = 0.0
        try:
            while True:
                now = time.monotonic()
                if w.conn.poll(max(0.0, min(budget - used, backstop - now))):
                    msg = w.conn.recv()
                    w.cpu = msg[-1]
                    return msg, None
                cpu = _cpu_seconds(w.proc.pid)
                used = budget if cpu is None else cpu - w.cpu  # unknown: the wall bound, as before
                if used >= budget or time.monotonic() >= backstop:
                    break
        except (EOFError, OSError):  # crashed: segfault in C, out-of-memory kill, ...
            why = ERROR
        self._replace(i)
        return None, why

    def _run(self, i: int, job: Job) -> None:
        todo, attempts = list(job.answers), 0
        while True:
            t0 = time.monotonic()
            try:
                self._worker(i).conn.send((job.golds, todo))
            except (OSError, ValueError):
                self._replace(i)
                if (attempts := attempts + 1) >= 3:
                    raise
                continue
            msg, why = self._recv(i, t0)
            if msg is None or msg[2] is not None:  # gold parse timed out or failed: unknown
                job.results += [(0, why or msg[2], 0.0)] * len(todo)
                return
            job.gold_ok, job.gold_exact = msg[1], msg[3]
            if not job.gold_ok:
                job.results += [(None, GOLD_UNPARSEABLE, 0.0)] * len(todo)
                return
            for k in range(len(todo)):
                t0 = time.monotonic()
                msg, why = self._recv(i, t0)
                if msg is None:  # killed or dead: score this answer, the rest go to a fresh worker
                    job.results.append((0, why, time.monotonic() - t0))
                    todo = todo[k + 1 :]
                    break
                job.results.append((msg[1], msg[2], time.monotonic() - t0))
            else:
                return
            if not todo:
                return

    def _forget_after_fork(self) -> None:
        """In a forked child the threads and pipes belong to the parent: start afresh if used."""
        self._lock = threading.Lock()
        self.jobs = queue.Queue()
        self._threads, self._workers = [], [None] * self.processes
        self._failure = None


_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _forget_parents_forkserver() -> None:
    """A forked child inherits the parent's forkserver handle, but the server is not its child:
    multiprocessing's ``ensure_running`` then raises ``ChildProcessError`` (waitpid). Drop the
    handle (closing only the child's copy of the keep-alive fd) so the child starts its own."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    server._forkserver_alive_fd = server._forkserver_pid = server._forkserver_address = None
    server._lock = threading.Lock()


def _after_fork_in_child() -> None:
    _forget_parents_forkserver()
    for pool in list(_LIVE_POOLS):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()


def default_processes() -> int:
    """One worker per CPU the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
