"""Batch-run the notebooks with papermill: one resumable run folder per run (docs/architecture.md "Runs").

Order (docs/architecture.md): 01 probe (stage 1) -> 02 curate -> 03 stage 1 -> 01 probe (stage 2) ->
03 stage 2 -> ... -> 04 length extrapolation -> 05 eval -> 06 report.

Resuming: a step is skipped when its folder is complete (`artifacts.step_done`) AND the
fingerprint of the config it depends on (its own sections plus every earlier step's fingerprint)
matches the one recorded in the manifest when it finished. The whole config (types, ranges,
dataset names) is resolved and checked before any file is touched. The first step that must run
again invalidates every step after it: their folders (and checkpoints, report.html) are moved
aside into `<run>/superseded/<timestamp>/` before anything runs, so artifacts of two configs never
mix and nothing finished is lost. A step that failed or was interrupted with an unchanged
config keeps its folder: the notebooks resume their own partial work (probe grid, curation
chunks, trainer checkpoints) deterministically.

Overrides given on an existing run merge into its stored ones (`reset_overrides` starts from the
preset again). Everything that can refuse an invocation (bad config, a step that must run first
but is not selected, finished steps a config change would re-run and `confirm` declines) is
decided before the manifest or any folder is written: a refused command changes no file.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import MANIFEST, Manifest, environment, now
from polaris_lib.config import ConfigError, resolve
from polaris_lib.curate import pool_problems
from polaris_lib.data import DataOverlapError, check_available, check_names
from polaris_lib.pipeline.jupyter_kernel import ensure_kernel
from polaris_lib.pipeline.lock import RunLock
from polaris_lib.pipeline.notebook import (
    StepFailed,
    Watch,
    describe_failure,
    execute_notebook,
    fmt_seconds,
    rel_path,
)
from polaris_lib.pipeline.steps import (
    Step,
    changed_keys,
    fingerprints,
    plan_steps,
    select_steps,
    step_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ID = re.compile(r"[A-Za-z0-9._-]+")
SUPERSEDED = "superseded"
"""Folder of a run where steps invalidated by a config change are moved, one timestamp each."""

Confirm = Callable[[list[str], str], bool]
"""Asked (finished steps a config change would re-run, why) before anything is moved aside."""


class NotConfirmed(ValueError):
    """A config change would re-run finished steps and the caller did not confirm it."""


@dataclass
class RunResult:
    """What `run_pipeline` did: the run folder, final status and the steps it executed."""

    run_dir: Path
    status: str
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None


@dataclass
class RunContext:
    """One invocation of the pipeline on one run folder: what it runs, where, and how."""

    run_id: str
    run_dir: Path
    rel_run: str
    """The run folder as the notebooks see it (relative to the repository root when inside it)."""
    repo_root: Path
    notebooks_dir: Path
    preset: str
    seed: int
    overrides: dict[str, Any]
    cfg: dict[str, Any]
    """The resolved RunConfig as a dict (what fingerprints and step configs are computed from)."""
    plan: list[Step]
    fingerprints: list[str]
    kernel_name: str
    heartbeat_s: float
    log: Callable[[str], None]
    manifest: Manifest | None = None

    def parameters(self, step: Step) -> dict[str, Any]:
        """The papermill parameters of a step's notebook."""
        params = dict(
            PRESET=self.preset, RUN_DIR=self.rel_run, SEED=self.seed, OVERRIDES=self.overrides
        )
        if step.stage is not None:
            params["STAGE"] = step.stage
        return params

    def execute(self, i: int) -> None:
        """Run step i's notebook; record the attempt in the manifest; raise StepFailed on error."""
        step, man, n = self.plan[i], self.manifest, len(self.plan)
        nb = self.notebooks_dir / f"{step.notebook}.ipynb"
        out_dir = self.run_dir / step.name
        out_nb = rel_path(out_dir / "notebook.ipynb", self.repo_root)
        if not nb.exists():
            man.step(step.name)["status"] = "failed"
            man.save()
            raise StepFailed(f"step {step.name}: notebook {nb} not found")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.log(f"[polaris] ({i + 1}/{n}) {step.name}: running {nb.name} -> {out_nb}")
        man.start_attempt(step.name)
        watch = Watch(step.name, self.heartbeat_s, self.log)
        t0 = time.time()
        try:
            with watch:
                execute_notebook(
                    nb,
                    out_dir / "notebook.ipynb",
                    self.parameters(step),
                    kernel_name=self.kernel_name,
                    cwd=self.repo_root,
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
            msg = describe_failure(step.name, exc, out_nb)
            man.end_attempt(
                step.name, "failed", msg.splitlines()[1][:500], peak_rss_gb=watch.peak_gb
            )
            raise StepFailed(msg) from exc
        man.end_attempt(
            step.name,
            "done",
            None,
            fingerprint=self.fingerprints[i],
            config=step_config(self.cfg, step),
            output=out_nb,
            peak_rss_gb=watch.peak_gb,
        )
        self.log(f"[polaris] ({i + 1}/{n}) {step.name}: done in {fmt_seconds(time.time() - t0)}")


def check_run_id(run_id: str) -> str:
    """A run id is a folder name: letters, digits, '.', '_', '-'; never a path or '..'."""
    if not RUN_ID.fullmatch(run_id or "") or ".." in run_id or run_id == ".":
        raise ConfigError(
            f"run id {run_id!r} is not a name: use letters, digits, '.', '_' and '-' only "
            "(no '/', no '..'); the run folder is <reports-dir>/<run id>"
        )
    return run_id


def check_run_folder(run_dir: Path) -> None:
    """Refuse a folder that exists, holds files and is not a kit run folder (no manifest.json)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder: choose another --run-id")
    if (run_dir / MANIFEST).is_file():
        try:
            data = artifacts.read_json(run_dir / MANIFEST)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{run_dir / MANIFEST} is not readable JSON ({exc}): not a polaris run folder "
                "the runner will write into; restore the file or choose another --run-id"
            ) from None
        if isinstance(data, dict) and {"steps", "invocations", "run_id"} <= set(data):
            return
        raise ConfigError(
            f"{run_dir / MANIFEST} is not a polaris run manifest: refusing to write into or "
            "clean that folder; choose another --run-id or --reports-dir"
        )
    if any(p.name != ".lock" for p in run_dir.iterdir()):
        raise ConfigError(
            f"{run_dir} exists but is not a polaris run folder (no {MANIFEST}): refusing to "
            "write into or clean it; choose another --run-id or --reports-dir"
        )


def _aside_dir(run_dir: Path) -> Path:
    """A fresh `<run>/superseded/<UTC timestamp>/` for this invalidation."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest, n = run_dir / SUPERSEDED / stamp, 1
    while dest.exists():
        n += 1
        dest = run_dir / SUPERSEDED / f"{stamp}-{n}"
    return dest


def _set_aside(run_dir: Path, step: Step, dest: Path) -> list[str]:
    """Move a step's folder (and a stage's checkpoints, the report page) into `dest`, so stale
    artifacts cannot be mixed in and nothing finished is lost; returns what moved (relative)."""
    paths = [run_dir / step.name]
    if step.notebook == artifacts.GRPO_STAGE:
        paths.append(artifacts.checkpoint_dir(run_dir, step.stage))
    if step.notebook == artifacts.REPORT:
        paths.append(run_dir / "report.html")
    moved = []
    for path in paths:
        if not (path.exists() or path.is_symlink()):
            continue
        rel = path.relative_to(run_dir)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(dest / rel))
        moved.append(str(rel))
    return moved


def first_step_to_run(ctx: RunContext, rerun_from: str | None) -> tuple[int | None, str]:
    """Index of the first step that must run, and why (None: everything is complete)."""
    man, run_dir, cfg = ctx.manifest, ctx.run_dir, ctx.cfg
    for i, (step, fp) in enumerate(zip(ctx.plan, ctx.fingerprints, strict=True)):
        rec = man.step(step.name) or {}
        if rerun_from and step.name.startswith(rerun_from):
            return i, f"--rerun-from {rerun_from}"
        if rec.get("status") == "done" and rec.get("fingerprint") not in (None, fp):
            keys = changed_keys(rec.get("config"), step_config(cfg, step))
            why = f"config changed ({', '.join(keys[:6])})" if keys else "an earlier step changed"
            return i, why
        if rec.get("status") == "done" and artifacts.step_done(run_dir / step.name):
            continue
        if rec.get("status") == "done":
            return i, "artifacts missing or incomplete"
        if rec.get("status") == "failed":
            return i, f"previous attempt failed ({rec.get('error') or 'error'})"
        return i, "not run yet"
    return None, "complete"


def merge_overrides(
    stored: dict[str, Any] | None, given: dict[str, Any] | None, reset: bool = False
) -> dict[str, Any]:
    """The overrides of this invocation: `given` merged into the run's `stored` ones (a later
    name wins); `reset` drops the stored ones; no `given` keeps them."""
    base = {} if reset else dict(stored or {})
    return {**base, **(given or {})}


def check_before_writing(
    ctx: RunContext, chosen: set[str], rerun_from: str | None, confirm: Confirm | None = None
) -> list[str]:
    """Everything that can refuse this invocation, decided on a copy of the stored manifest so a
    refusal writes nothing. Returns the finished steps a config change re-runs (confirmed)."""
    if ctx.manifest is None:
        return []
    shadow = Manifest(ctx.run_dir, copy.deepcopy(ctx.manifest.data))
    shadow.mark_interrupted()
    first, why = first_step_to_run(_with_manifest(ctx, shadow), rerun_from)
    if first is None:
        return []
    plan = ctx.plan
    if not any(s.name in chosen for s in plan[first:]):
        return []
    if plan[first].name not in chosen:
        raise ValueError(
            f"step {plan[first].name} must run first ({why}): add it to --steps or drop --steps; "
            "nothing was changed"
        )
    if not why.startswith(("config changed", "an earlier step changed")):
        return []
    finished = [s.name for s in plan[first:] if (shadow.step(s.name) or {}).get("status") == "done"]
    if finished and confirm is not None and not confirm(finished, why):
        raise NotConfirmed(
            f"{plan[first].name}: {why}; this would re-run {len(finished)} finished step(s): "
            f"{', '.join(finished)} (moved aside into {SUPERSEDED}/). Nothing was changed; "
            "confirm with --yes"
        )
    return finished


def _with_manifest(ctx: RunContext, man: Manifest) -> RunContext:
    return replace(ctx, manifest=man)


def run_pipeline(
    preset: str | None = None,
    run_id: str | None = None,
    *,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    steps: str | list[str] | None = None,
    rerun_from: str | None = None,
    reports_dir: str | Path = "reports",
    notebooks_dir: str | Path = "notebooks",
    repo_root: str | Path = REPO_ROOT,
    kernel_name: str = "python3",
    heartbeat_s: float = 30.0,
    log=print,
    reset_overrides: bool = False,
    confirm: Confirm | None = None,
) -> RunResult:
    """Run (or resume) the pipeline for `preset` into reports_dir/run_id; raises StepFailed.

    `overrides` merge into a stored run's (`reset_overrides`: replace them). `confirm(steps,
    why)` is asked before a config change re-runs finished steps (None: go ahead); declining
    raises NotConfirmed and, like every refusal, leaves every file as it was.
    """
    ctx = _context(
        preset=preset,
        run_id=run_id,
        seed=seed,
        overrides=overrides,
        reset_overrides=reset_overrides,
        reports_dir=reports_dir,
        notebooks_dir=notebooks_dir,
        repo_root=repo_root,
        kernel_name=kernel_name,
        heartbeat_s=heartbeat_s,
        log=log,
    )
    chosen = select_steps(ctx.plan, steps)
    kernel_python = ensure_kernel(kernel_name, log=log)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(ctx.run_dir):
        check_before_writing(ctx, chosen, rerun_from, confirm)
        _open_manifest(ctx, kernel_python)
        result = RunResult(run_dir=ctx.run_dir, status="running")
        man = ctx.manifest
        try:
            _run_steps(ctx, chosen, rerun_from, result)
        except BaseException as exc:
            man.data["status"] = "failed"
            man.data["invocations"][-1].update(ended=now(), status="failed", error=repr(exc)[:300])
            man.save()
            raise
        done = all((man.step(s.name) or {}).get("status") == "done" for s in ctx.plan)
        man.data["status"] = result.status = "done" if done else "partial"
        man.data["invocations"][-1].update(ended=now(), status=result.status)
        man.save()
    report = ctx.run_dir / "report.html"
    result.report = report if report.exists() else None
    return result


def _under(root: Path, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


def _context(
    *,
    preset,
    run_id,
    seed,
    overrides,
    reset_overrides,
    reports_dir,
    notebooks_dir,
    repo_root,
    kernel_name,
    heartbeat_s,
    log,
) -> RunContext:
    """Resolve what this invocation runs: the stored run's preset, seed and overrides unless
    given, the config (ConfigError on bad input), the step plan and its fingerprints."""
    repo_root = Path(repo_root)
    reports_dir = _under(repo_root, reports_dir)
    if run_id is not None:
        check_run_id(run_id)
        check_run_folder(reports_dir / run_id)
    stored = Manifest.load(reports_dir / run_id) if run_id else None
    preset = preset or (stored.data["preset"] if stored else "tiny")
    run_id = run_id or preset
    run_dir = reports_dir / run_id
    check_run_folder(run_dir)
    stored = stored or Manifest.load(run_dir)
    if stored:
        seed = stored.data.get("seed", 0) if seed is None else seed
        overrides = merge_overrides(stored.data.get("overrides"), overrides, reset_overrides)
        if stored.data.get("preset") != preset:
            log(f"[polaris] run {run_id}: preset {stored.data.get('preset')} -> {preset}")
    seed, overrides = seed or 0, dict(overrides or {})
    rel_run = rel_path(run_dir, repo_root)
    resolve(preset, overrides)  # the overrides alone are valid too (-p seed X is then replaced)
    run_cfg = resolve(preset, overrides, SEED=seed, RUN_DIR=rel_run)
    try:
        check_names(run_cfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # What the run needs is checked before step 01, not discovered at step 05 after training.
    for name, why in check_available(run_cfg).items():
        log(f"[polaris] {name} will be skipped in 05 (a harness check on the toy model): {why}")
    # Nor does a run train on a test set: the pool is refused if it holds a benchmark problem.
    try:
        pool_problems(run_cfg)
    except DataOverlapError as exc:
        raise ConfigError(str(exc)) from None
    cfg = run_cfg.to_dict()
    plan = plan_steps(len(cfg["stages"]))
    return RunContext(
        run_id=run_id,
        run_dir=run_dir,
        rel_run=rel_run,
        repo_root=repo_root,
        notebooks_dir=_under(repo_root, notebooks_dir),
        preset=preset,
        seed=seed,
        overrides=overrides,
        cfg=cfg,
        plan=plan,
        fingerprints=fingerprints(cfg, plan),
        kernel_name=kernel_name,
        heartbeat_s=heartbeat_s,
        log=log,
        manifest=stored,
    )


def _open_manifest(ctx: RunContext, kernel_python: str) -> None:
    """Create or update the run's manifest for this invocation (under the run lock)."""
    man = ctx.manifest or Manifest.create(ctx.run_dir, run_id=ctx.run_id)
    ctx.manifest = man
    for name in man.mark_interrupted():
        ctx.log(f"[polaris] step {name} was interrupted last time: it will run again")
    cfg = ctx.cfg
    man.data.update(
        run_id=ctx.run_id,
        run_dir=ctx.rel_run,
        preset=ctx.preset,
        seed=ctx.seed,
        overrides=ctx.overrides,
        seeds={
            "run": ctx.seed,
            "toy": cfg["toy"]["seed"] if cfg.get("toy") else None,
            "stages": [s["seed"] + ctx.seed for s in cfg["stages"]],
        },
        kernel={"name": ctx.kernel_name, "python": kernel_python},
        status="running",
        **environment(ctx.repo_root),
    )
    man.data["invocations"].append({"argv": sys.argv, "started": now(), "status": "running"})
    man.set_steps(
        [{"step": s.name, "notebook": f"{s.notebook}.ipynb", "stage": s.stage} for s in ctx.plan]
    )
    man.save()


def _run_steps(ctx: RunContext, chosen: set[str], rerun_from: str | None, result: RunResult):
    """Invalidate what must run again, then execute the selected steps in order."""
    man, run_dir, plan, log = ctx.manifest, ctx.run_dir, ctx.plan, ctx.log
    first, why = first_step_to_run(ctx, rerun_from)
    if first is None:
        log(f"[polaris] run {run_dir.name}: every step is complete and up to date")
        result.skipped = [s.name for s in plan]
        return
    step = plan[first]
    resume_in_place = why.startswith("previous attempt failed")
    if not any(s.name in chosen for s in plan[first:]):
        log(f"[polaris] the selected steps are complete; next would be {step.name} ({why})")
        result.skipped = [s.name for s in plan]
        return
    if step.name not in chosen:
        raise ValueError(
            f"step {step.name} must run first ({why}): add it to --steps or drop --steps"
        )
    if why.startswith(("config changed", "--rerun", "artifacts missing")) or (
        any((man.step(s.name) or {}).get("status") == "done" for s in plan[first + 1 :])
    ):
        log(f"[polaris] step {step.name}: {why} -> re-running {step.name} and everything after")
    elif first > 0:
        log(f"[polaris] resuming at {step.name} ({why}); {first} step(s) already complete")
    aside, moved = _aside_dir(run_dir), []
    for i, s in enumerate(plan[first:], start=first):
        rec = man.step(s.name)
        if not (i == first and resume_in_place):
            moved += _set_aside(run_dir, s, aside)
            # earlier attempts belonged to other inputs: kept as history, not counted as retries
            for att in rec.get("attempts", []):
                att.setdefault("superseded", why if i == first else f"{step.name} re-ran")
        if rec.get("status") == "done" or not (i == first and resume_in_place):
            rec.update(status="pending", fingerprint=None)
    if moved:
        log(
            f"[polaris] moved aside into {rel_path(aside, ctx.repo_root)}/ (delete it to free the "
            f"space): {', '.join(moved)}"
        )
    man.save()
    result.skipped = [s.name for s in plan[:first]]
    stopped = None
    for i, s in enumerate(plan[first:], start=first):
        if stopped or s.name not in chosen:
            # every later step reads this one's artifacts: stop at the first unselected step
            stopped = stopped or s.name
            man.step(s.name)["status"] = "skipped"
            man.save()
            result.skipped.append(s.name)
            continue
        ctx.execute(i)
        result.executed.append(s.name)
    if stopped:
        log(f"[polaris] stopped before {stopped} (not selected by --steps); later steps need it")
