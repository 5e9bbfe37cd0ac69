"""The run lock: two runners never write into one run folder."""

from __future__ import annotations

import os
from pathlib import Path


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
