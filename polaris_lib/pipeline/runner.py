"""Batch-run the notebooks with papermill: one resumable run folder per run (ARCHITECTURE "Runs").

Order (NOTEBOOKS.md): 01 probe (stage 1) -> 02 curate -> 03 stage 1 -> 01 probe (stage 2) ->
03 stage 2 -> ... -> 04 length extrapolation -> 05 eval -> 06 report.

Resuming: a step is skipped when its folder is complete (`artifacts.step_done`) AND the
fingerprint of the config it depends on (its own sections plus every earlier step's fingerprint)
matches the one recorded in the manifest when it finished. The first step that must run again
invalidates every step after it: their folders (and checkpoints) are deleted before anything runs,
so artifacts of two configs never mix. A step that failed or was interrupted with an unchanged
config keeps its folder: the notebooks resume their own partial work (probe grid, curation
chunks, trainer checkpoints) deterministically.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import Manifest, environment, now
from polaris_lib.config.overrides import resolve
from polaris_lib.pipeline.jupyter_kernel import ensure_kernel
from polaris_lib.pipeline.lock import RunLock
from polaris_lib.pipeline.notebook import (  # noqa: F401  (StepFailed: run_pipeline raises it)
    StepFailed,
    execute_step,
    rel_path,
)
from polaris_lib.pipeline.steps import (  # noqa: F401  (re-exported: the runner's public API)
    Step,
    changed_keys,
    fingerprints,
    flatten,
    parse_value,
    plan_steps,
    select_steps,
    step_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunResult:
    """What `run_pipeline` did: the run folder, final status and the steps it executed."""

    run_dir: Path
    status: str
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None


def _wipe(run_dir: Path, step: Step) -> None:
    """Delete a step's folder (and a stage's checkpoints) so stale artifacts cannot be mixed in."""
    shutil.rmtree(run_dir / step.name, ignore_errors=True)
    if step.notebook == artifacts.STAGE:
        shutil.rmtree(artifacts.checkpoint_dir(run_dir, step.stage), ignore_errors=True)
    if step.notebook == artifacts.REPORT:
        (run_dir / "report.html").unlink(missing_ok=True)


def first_step_to_run(
    man: Manifest,
    run_dir: Path,
    steps: list[Step],
    fps: list[str],
    cfg: dict,
    rerun_from: str | None,
) -> tuple[int | None, str]:
    """Index of the first step that must run, and why (None: everything is complete)."""
    for i, (step, fp) in enumerate(zip(steps, fps, strict=True)):
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
) -> RunResult:
    """Run (or resume) the pipeline for `preset` into reports_dir/run_id; raises StepFailed."""
    repo_root = Path(repo_root)
    reports_dir = Path(reports_dir)
    reports_dir = reports_dir if reports_dir.is_absolute() else repo_root / reports_dir
    notebooks_dir = Path(notebooks_dir)
    notebooks_dir = notebooks_dir if notebooks_dir.is_absolute() else repo_root / notebooks_dir
    stored = Manifest.load(reports_dir / run_id) if run_id else None
    preset = preset or (stored.data["preset"] if stored else "tiny")
    run_id = run_id or preset
    run_dir = reports_dir / run_id
    stored = stored or Manifest.load(run_dir)
    if stored:
        seed = stored.data.get("seed", 0) if seed is None else seed
        overrides = stored.data.get("overrides", {}) if overrides is None else overrides
        if stored.data.get("preset") != preset:
            log(f"[polaris] run {run_id}: preset {stored.data.get('preset')} -> {preset}")
    seed, overrides = seed or 0, dict(overrides or {})
    rel_run = rel_path(run_dir, repo_root)
    cfg_obj = resolve(preset, overrides, SEED=seed, RUN_DIR=rel_run)  # ConfigError on bad input
    cfg = cfg_obj.to_dict()
    plan = plan_steps(len(cfg_obj.stages))
    fps = fingerprints(cfg, plan)
    chosen = select_steps(plan, steps)
    kernel_python = ensure_kernel(kernel_name, log=log)

    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        man = stored or Manifest.create(run_dir, run_id=run_id)
        interrupted = man.mark_interrupted()
        for name in interrupted:
            log(f"[polaris] step {name} was interrupted last time: it will run again")
        man.data.update(
            run_id=run_id,
            run_dir=rel_run,
            preset=preset,
            seed=seed,
            overrides=overrides,
            seeds={
                "run": seed,
                "toy": cfg["toy"]["seed"] if cfg.get("toy") else None,
                "stages": [s["seed"] + seed for s in cfg["stages"]],
            },
            kernel={"name": kernel_name, "python": kernel_python},
            status="running",
            **environment(repo_root),
        )
        man.data["invocations"].append({"argv": sys.argv, "started": now(), "status": "running"})
        man.set_steps(
            [{"step": s.name, "notebook": f"{s.notebook}.ipynb", "stage": s.stage} for s in plan]
        )
        man.save()
        result = RunResult(run_dir=run_dir, status="running")
        try:
            _run_steps(
                man,
                run_dir,
                plan,
                fps,
                cfg,
                chosen,
                rerun_from,
                notebooks_dir,
                repo_root,
                dict(
                    preset=preset,
                    seed=seed,
                    overrides=overrides,
                    rel_run=rel_run,
                    kernel_name=kernel_name,
                    heartbeat_s=heartbeat_s,
                ),
                result,
                log,
            )
        except BaseException as exc:
            man.data["status"] = "failed"
            man.data["invocations"][-1].update(ended=now(), status="failed", error=repr(exc)[:300])
            man.save()
            raise
        done = all((man.step(s.name) or {}).get("status") == "done" for s in plan)
        man.data["status"] = result.status = "done" if done else "partial"
        man.data["invocations"][-1].update(ended=now(), status=result.status)
        man.save()
    report = run_dir / "report.html"
    result.report = report if report.exists() else None
    return result


def _run_steps(man, run_dir, plan, fps, cfg, chosen, rerun_from, nb_dir, root, p, result, log):
    first, why = first_step_to_run(man, run_dir, plan, fps, cfg, rerun_from)
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
    for i, s in enumerate(plan[first:], start=first):
        rec = man.step(s.name)
        if not (i == first and resume_in_place):
            _wipe(run_dir, s)
            # earlier attempts belonged to other inputs: kept as history, not counted as retries
            for att in rec.get("attempts", []):
                att.setdefault("superseded", why if i == first else f"{step.name} re-ran")
        if rec.get("status") == "done" or not (i == first and resume_in_place):
            rec.update(status="pending", fingerprint=None)
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
        execute_step(
            man, run_dir, s, fps[i], step_config(cfg, s), nb_dir, root, p, i, len(plan), log
        )
        result.executed.append(s.name)
    if stopped:
        log(f"[polaris] stopped before {stopped} (not selected by --steps); later steps need it")
