"""The run lock: two runners never write into one run folder.

The lock is `fcntl.flock` on `<run>/.lock`: atomic (two runners started together cannot both get
it) and released by the kernel when its holder dies, so a stale file left by a killed run never
blocks, whatever process later reuses its PID. The file holds the holder's PID, for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunInUse(RuntimeError):
    """Another runner holds the run folder's lock."""


class RunLock:
    """One runner per run folder: a second `polaris run` on the same id refuses to start."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self._fd: int | None = None

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"process {holder}" if holder else "another process"
                raise RunInUse(
                    f"run folder {self.path.parent} is in use by {who} (another `polaris run` on "
                    "this run id); wait for it to finish or stop it, then rerun"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder before us may have unlinked the file between our open and our lock:
            # then we hold a lock on a file nobody else sees. Retry on the current file.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: no one can be fooled by it
        finally:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (ValueError, OSError):
        return 0
