"""Process helpers for the runner: a heartbeat that also records the kernel's peak memory, and
a lock so two runners never write into one run folder."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def fmt_seconds(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


class Watch:
    """Heartbeat while a step runs: elapsed time every `every` s, and the kernel's peak RSS."""

    def __init__(self, name: str, every: float, log):
        self.name, self.every, self.log = name, every, log
        self.peak_gb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        try:
            kids = psutil.Process().children(recursive=True)
            rss = sum(k.memory_info().rss for k in kids if k.is_running())
        except (psutil.Error, OSError):
            return
        self.peak_gb = max(self.peak_gb, round(rss / 2**30, 3))

    def _loop(self) -> None:
        t0, last = time.time(), time.time()
        while not self._stop.wait(1.0):
            self._sample()
            if self.every and time.time() - last >= self.every:
                last = time.time()
                self.log(
                    f"[polaris] {self.name}: running for {fmt_seconds(last - t0)} "
                    f"(kernel peak RSS {self.peak_gb:.2f} GB)"
                )

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._thread.join(timeout=5)


class RunLock:
    """One runner per run folder: a second `polaris run` on the same id refuses to start."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"

    def __enter__(self):
        import psutil

        if self.path.exists():
            try:
                pid = int(self.path.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and psutil.pid_exists(pid):
                raise RuntimeError(
                    f"run folder {self.path.parent} is in use by process {pid}; wait for it or "
                    f"stop it (kill {pid}) and rerun"
                )
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
