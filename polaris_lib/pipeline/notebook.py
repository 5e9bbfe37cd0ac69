"""Executing one step's notebook with papermill, watched, its failure described.

The runner (polaris_lib/pipeline/runner.py) decides which steps run and records each attempt in
the manifest; this module runs one notebook, logs a heartbeat with the kernel's peak memory while
it runs, and turns a notebook error into StepFailed naming the cell, the error and the partially
executed notebook.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


class StepFailed(RuntimeError):
    """A notebook failed: the message names the cell, the error and the partial notebook."""


def rel_path(path: Path, root: Path) -> str:
    """Path as the notebooks see it: relative to the repo root when inside it (portable configs)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


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


QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # Hugging Face loading / "Writing model shards" bars
    "TRANSFORMERS_VERBOSITY": "error",  # generation max-length reminders and similar notices
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
"""Set for batch runs' kernels unless already set: the run log keeps the kit's own progress
lines and every error, not Hugging Face's bars and reminders."""


def execute_notebook(
    notebook: Path, out_nb: Path, parameters: dict[str, Any], *, kernel_name: str, cwd: Path
) -> None:
    """papermill-execute `notebook` into `out_nb` with `parameters`, streaming its output."""
    import papermill as pm

    for key, value in QUIET_ENV.items():  # the kernel inherits this process's environment
        os.environ.setdefault(key, value)
    pm.execute_notebook(
        str(notebook),
        str(out_nb),
        parameters=parameters,
        kernel_name=kernel_name,
        cwd=str(cwd),
        progress_bar=False,
        stdout_file=sys.stdout,
        stderr_file=sys.stderr,
        # the kernel app's own start-up warnings (plain-TCP notice) are noise here; the
        # notebook's stdout/stderr, tracebacks and progress bars still come through
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )


def describe_failure(step_name: str, exc: Exception, out_nb: str) -> str:
    """Cell index, source and error of a failed notebook, and where the partial notebook is."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        src = exc.source if isinstance(exc.source, str) else "".join(exc.source)
        lines = src.splitlines()
        shown = "\n".join("    " + ln for ln in lines[:25]) + (
            "\n    ..." if len(lines) > 25 else ""
        )
        return (
            f"step {step_name} failed in cell {exc.cell_index} of the executed notebook "
            f"(In [{exc.exec_count}]):\n{exc.ename}: {exc.evalue}\n--- cell source ---\n{shown}\n"
            f"partially executed notebook: {out_nb}"
        )
    return (
        f"step {step_name} failed:\n{type(exc).__name__}: {exc}\n"
        f"partially executed notebook: {out_nb}"
    )
