"""One pipeline step: execute its notebook with papermill and record the attempt in the manifest.

The runner (polaris_lib/pipeline/runner.py) decides which steps run; this module runs one, checks that
its folder was finished (`artifacts.finish_step`), and turns a notebook error into StepFailed
naming the cell, the error and the partially executed notebook.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from polaris_lib import artifacts
from polaris_lib.pipeline.lock import Watch, fmt_seconds
from polaris_lib.pipeline.steps import Step


class StepFailed(RuntimeError):
    """A notebook failed: the message names the cell, the error and the partial notebook."""


def rel_path(path: Path, root: Path) -> str:
    """Path as the notebooks see it: relative to the repo root when inside it (portable configs)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def execute_step(man, run_dir, step, fp, step_cfg, nb_dir, root, p, i, n, log) -> None:
    """Run one notebook with papermill; record the attempt; raise StepFailed on error."""
    import papermill as pm

    nb = nb_dir / f"{step.notebook}.ipynb"
    out_dir = run_dir / step.name
    out_nb = out_dir / "notebook.ipynb"
    if not nb.exists():
        man.step(step.name)["status"] = "failed"
        man.save()
        raise StepFailed(f"step {step.name}: notebook {nb} not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(
        PRESET=p["preset"], RUN_DIR=p["rel_run"], SEED=p["seed"], OVERRIDES=p["overrides"]
    )
    if step.stage is not None:
        params["STAGE"] = step.stage
    log(f"[polaris] ({i + 1}/{n}) {step.name}: running {nb.name} -> {rel_path(out_nb, root)}")
    man.start_attempt(step.name)
    watch = Watch(step.name, p["heartbeat_s"], log)
    t0 = time.time()
    try:
        with watch:
            pm.execute_notebook(
                str(nb),
                str(out_nb),
                parameters=params,
                kernel_name=p["kernel_name"],
                cwd=str(root),
                progress_bar=False,
                stdout_file=sys.stdout,
                stderr_file=sys.stderr,
                # the kernel app's own start-up warnings (plain-TCP notice) are noise here; the
                # notebook's stdout/stderr, tracebacks and progress bars still come through
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
        if not artifacts.step_done(out_dir):
            raise StepFailed(
                f"step {step.name}: the notebook finished but its folder is incomplete "
                f"(no {artifacts.DONE_FILE}: the notebook must call artifacts.finish_step last)"
            )
    except KeyboardInterrupt:
        man.end_attempt(step.name, "failed", "interrupted (Ctrl-C)", peak_rss_gb=watch.peak_gb)
        raise
    except Exception as exc:
        msg = _describe_failure(step, exc, rel_path(out_nb, root))
        man.end_attempt(step.name, "failed", msg.splitlines()[1][:500], peak_rss_gb=watch.peak_gb)
        raise StepFailed(msg) from exc
    man.end_attempt(
        step.name,
        "done",
        None,
        fingerprint=fp,
        config=step_cfg,
        output=rel_path(out_nb, root),
        peak_rss_gb=watch.peak_gb,
    )
    log(f"[polaris] ({i + 1}/{n}) {step.name}: done in {fmt_seconds(time.time() - t0)}")


def _describe_failure(step: Step, exc: Exception, out_nb: str) -> str:
    """Cell index, source and error of a failed notebook, and where the partial notebook is."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        src = exc.source if isinstance(exc.source, str) else "".join(exc.source)
        lines = src.splitlines()
        shown = "\n".join("    " + ln for ln in lines[:25]) + (
            "\n    ..." if len(lines) > 25 else ""
        )
        return (
            f"step {step.name} failed in cell {exc.cell_index} of the executed notebook (In [{exc.exec_count}]):\n"
            f"{exc.ename}: {exc.evalue}\n--- cell source ---\n{shown}\n"
            f"partially executed notebook: {out_nb}"
        )
    return (
        f"step {step.name} failed:\n{type(exc).__name__}: {exc}\n"
        f"partially executed notebook: {out_nb}"
    )
