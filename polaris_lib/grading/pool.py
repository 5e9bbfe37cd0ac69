"""The parent side of the grader's worker processes (polaris_lib/grading/worker.py): a pool.

The parent kills and replaces any worker that misses ``timeout_s + grace_s`` (the hard bound on
math-verify, RECIPE §8). It is one driver thread per worker pulling jobs from a shared queue, so
callers may submit from any thread; workers start lazily and restart after a fork or a kill.
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


@dataclass
class Job:
    """Answers to check against one gold; results[i] = (score, reason, seconds) when done."""

    golds: tuple[str, ...]
    answers: list[str]
    on_done: object  # callable(job) invoked by the driver thread
    index: list = field(default_factory=list)  # caller's positions of the answers
    gold_ok: bool | None = None
    results: list = field(default_factory=list)


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx, timeout_s: float, memory_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, timeout_s, memory_mb), daemon=True)
        self.proc.start()
        child.close()
        # forkserver/spawn children re-import the parent's __main__ script (with its torch import):
        # wait for that with a generous bound, so no grading deadline ever includes start-up.
        if not self.conn.poll(STARTUP_TIMEOUT_S) or self.conn.recv() != ("ready",):
            self.kill()
            raise RuntimeError(f"grading worker did not start within {STARTUP_TIMEOUT_S} s")

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
        except RuntimeError:
            pass  # retried when the first job arrives
        self._ready[i].set()
        while (job := self.jobs.get()) is not None:
            try:
                self._run(i, job)
            except BaseException:  # noqa: BLE001 - a driver must never die with a job pending
                job.results += [(0, ERROR, 0.0)] * (len(job.answers) - len(job.results))
            finally:
                job.on_done(job)

    def _recv(self, i: int, t0: float) -> tuple[tuple | None, str | None]:
        """(message, None) from worker i, or (None, TIMEOUT/ERROR) if it missed the bound or died."""
        w = self._worker(i)
        why = TIMEOUT
        try:
            if w.conn.poll(max(0.0, t0 + self.timeout_s + self.grace_s - time.monotonic())):
                return w.conn.recv(), None
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
            job.gold_ok = msg[1]
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


_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
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
