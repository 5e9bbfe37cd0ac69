"""The pipeline's steps and their config fingerprints (what decides whether a step is stale).

Step order (docs/architecture.md): 01 probe (stage 1) -> 02 curate -> 03 stage 1 -> 01 probe (stage 2)
-> 03 stage 2 -> ... -> 04 length extrapolation -> 05 eval -> 06 report. A step's fingerprint
hashes the config values its notebook reads directly plus the previous step's fingerprint, so a
change invalidates that step and every step after it, and nothing before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from polaris_lib import artifacts

# Config sections each notebook reads directly; earlier steps enter through the fingerprint chain.
NOT_FINGERPRINTED = ("report_to",)
"""Config fields that are logging choices: left out of step configs and fingerprints."""
_COMMON = ("seed", "model", "toy")
_SECTIONS = {
    artifacts.PROBE: ("probe",),
    artifacts.CURATE: ("curation",),
    artifacts.GRPO_STAGE: (
        "curation",
    ),  # + stages[k-1], added in step_config (easy-drop threshold lives here)
    artifacts.EXTRAPOLATION: ("yarn",),
    artifacts.EVALUATION: ("eval", "yarn"),  # eval may apply YaRN
}


@dataclass(frozen=True)
class Step:
    """One notebook execution: its folder name, notebook file stem and stage (staged notebooks)."""

    name: str
    notebook: str
    stage: int | None = None


def plan_steps(n_stages: int) -> list[Step]:
    """The pipeline for a preset with `n_stages` GRPO stages, in execution order."""
    steps = []
    for k in range(1, n_stages + 1):
        steps.append(Step(f"{artifacts.PROBE}_stage{k}", artifacts.PROBE, k))
        if k == 1:
            steps.append(Step(artifacts.CURATE, artifacts.CURATE))
        steps.append(Step(f"{artifacts.GRPO_STAGE}_stage{k}", artifacts.GRPO_STAGE, k))
    return steps + [
        Step(artifacts.EXTRAPOLATION, artifacts.EXTRAPOLATION),
        Step(artifacts.EVALUATION, artifacts.EVALUATION),
        Step(artifacts.REPORT, artifacts.REPORT),
    ]


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> dotted keys: {"stages": [{"max_steps": 3}]} -> {"stages.0.max_steps": 3}."""
    if isinstance(d, dict) and d:
        items = d.items()
    elif isinstance(d, list) and d:
        items = ((str(i), v) for i, v in enumerate(d))
    else:
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def step_config(cfg: dict[str, Any], step: Step) -> dict[str, Any]:
    """The dotted config values `step` depends on directly (the report depends on everything)."""
    if step.notebook == artifacts.REPORT:
        flat = {k: v for k, v in flatten(cfg).items() if not k.startswith("run_dir")}
    else:
        sub = {k: cfg.get(k) for k in _COMMON + _SECTIONS[step.notebook]}
        if step.notebook == artifacts.GRPO_STAGE:
            sub[f"stages.{step.stage - 1}"] = cfg["stages"][step.stage - 1]
        flat = flatten(sub)
    # logging choices change no result: they never invalidate a finished step
    return {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] not in NOT_FINGERPRINTED}


def fingerprints(cfg: dict[str, Any], steps: list[Step]) -> list[str]:
    """Chained hashes: step i's covers its own config values and step i-1's fingerprint."""
    out, prev = [], ""
    for step in steps:
        blob = json.dumps(step_config(cfg, step), sort_keys=True, default=str) + prev
        prev = hashlib.sha256(blob.encode()).hexdigest()[:16]
        out.append(prev)
    return out


def changed_keys(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Dotted keys whose value differs between two step configs."""
    old = old or {}
    return sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))


def select_steps(steps: list[Step], spec: str | list[str] | None) -> set[str]:
    """Step names matching a --steps spec ("01,03" matches every probe and every stage step)."""
    if not spec:
        return {s.name for s in steps}
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    parts = [p.strip() for p in parts if p.strip()]
    chosen = {s.name for s in steps for p in parts if s.name == p or s.name.startswith(p)}
    unknown = [p for p in parts if not any(s.name.startswith(p) for s in steps)]
    if unknown:
        names = ", ".join(s.name for s in steps)
        raise ValueError(f"--steps: {unknown} match no step; steps are: {names}")
    return chosen


QUICK_OVERRIDES = {
    "probe.n_problems": 8,
    "probe.n_samples": 4,
    "curation.max_problems": 32,
    "stages.*.max_steps": 3,
    "stages.*.prompts_per_step": 8,
    "yarn.n_problems": 8,
    "yarn.n_samples": 2,
    "eval.max_problems": 8,
    "eval.samples": {"toy": 4, "aime24": 1, "aime25": 1},
    "eval.n_bootstrap": 200,
}
"""`polaris run --quick`: the tiny pipeline at minimum sizes (every step runs, numbers mean little)."""
