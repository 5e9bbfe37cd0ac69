"""The run folder's layout, and every fact one step leaves for another (read here, once each).

    reports/<run_id>/
        manifest.json                    written by the pipeline runner
        01_temperature_probe_stage1/     one folder per executed notebook step
            config.json  metrics.json  *.parquet  fig_*.png  notebook.ipynb
        02_curate_by_difficulty/
        03_grpo_stage_stage1/ ...
        checkpoints/stage1/              model checkpoints (git-ignored)
        report.html

Steps never import each other: a later step learns what an earlier one decided (the chosen
temperature, the training data of stage k, the policy checkpoint, whether a folder holds weights
and which) through the functions of this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from polaris_lib.artifacts.files import read_json, write_json
from polaris_lib.config.sections import RunConfig

# Step folder names, in pipeline order. Staged notebooks get a `_stage{k}` suffix.
PROBE = "01_temperature_probe"
CURATE = "02_curate_by_difficulty"
GRPO_STAGE = "03_grpo_stage"
EXTRAPOLATION = "04_length_extrapolation"
EVALUATION = "05_eval_aime"
REPORT = "06_report"
STAGED_STEPS = (PROBE, GRPO_STAGE)


def step_dir(
    run_dir: str | Path, step: str, stage: int | None = None, *, create: bool = True
) -> Path:
    """Folder of one notebook step, e.g. step_dir(run, GRPO_STAGE, 2) -> run/03_grpo_stage_stage2."""
    if step in STAGED_STEPS and stage is None:
        raise ValueError(f"step {step} runs once per stage: pass stage=k")
    name = f"{step}_stage{stage}" if step in STAGED_STEPS else step
    path = Path(run_dir) / name
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir(run_dir: str | Path, stage: int) -> Path:
    """Where stage k saves its policy (the final checkpoint the next stage and eval load)."""
    return Path(run_dir) / "checkpoints" / f"stage{stage}"


def holds_weights(path: str | Path) -> bool:
    """True when a checkpoint folder holds a model: full weights or a LoRA adapter."""
    path = Path(path)
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


def policy_checkpoint(run_dir: str | Path, stage: int) -> str | None:
    """The checkpoint stage `stage` starts from: stage k-1's final policy, None = base model."""
    if stage <= 1:
        return None
    path = checkpoint_dir(run_dir, stage - 1) / "final"
    if not holds_weights(path):
        raise FileNotFoundError(
            f"stage {stage} starts from stage {stage - 1}'s policy, but {path} has no checkpoint: "
            f"run 03_grpo_stage with STAGE={stage - 1} first"
        )
    return str(path)


def named_checkpoint(run_dir: str | Path, name: str, n_stages: int) -> str | None:
    """Folder of a named checkpoint: base -> None (the preset's model), stageK, final = stageN."""
    if name == "base":
        return None
    m = re.fullmatch(r"stage(\d+)", name)
    if name == "final":
        k = n_stages
    elif m and 1 <= int(m.group(1)) <= n_stages:
        k = int(m.group(1))
    else:
        raise ValueError(f"checkpoint {name!r}: use 'base', 'final' or 'stage1'..'stage{n_stages}'")
    path = checkpoint_dir(run_dir, k) / "final"
    if not holds_weights(path):
        raise FileNotFoundError(
            f"checkpoint {name!r} needs {path}, which holds no model: run 03_grpo_stage with "
            f"STAGE={k} first, or drop {name!r} from eval.checkpoints"
        )
    return str(path)


def weights_stamp(checkpoint: str | Path | None) -> str | None:
    """What identifies a checkpoint's weights: its newest file time (a retrained stage differs)."""
    if checkpoint is None or not Path(checkpoint).is_dir():
        return None
    return str(max(p.stat().st_mtime_ns for p in Path(checkpoint).iterdir()))


def stage_temperature(
    run: RunConfig, stage: int, run_dir: str | Path | None = None
) -> tuple[float, str]:
    """(rollout temperature of stage k, where it came from): the config's if set, else the
    temperature 01's probe chose for that stage in the run folder (default run.run_dir)."""
    st = run.stage(stage)
    if st.temperature is not None:
        return float(st.temperature), "config (stage.temperature)"
    run_dir = run.run_dir if run_dir is None else run_dir
    path = step_dir(run_dir, PROBE, stage, create=False) / "metrics.json"
    metrics = read_json(path) if path.exists() else {}
    if "probe/chosen_temperature" not in metrics:
        raise FileNotFoundError(
            f"stage {stage} has no temperature: set stages.{stage - 1}.temperature or run "
            f"01_temperature_probe with STAGE={stage} (expected {path})"
        )
    return float(metrics["probe/chosen_temperature"]), f"probe ({path.parent.name})"


def stage_data_path(run_dir: str | Path, stage: int) -> Path:
    """Training data of stage k: curated set (k = 1) or the previous stage's easy-drop survivors."""
    if stage == 1:
        return step_dir(run_dir, CURATE, create=False) / "curated.parquet"
    return step_dir(run_dir, GRPO_STAGE, stage - 1, create=False) / "next_stage_data.parquet"


DONE_FILE = "_done.json"


def finish_step(step: str | Path, required: Iterable[str], **info: Any) -> Path:
    """Mark a step complete: every `required` artifact exists and is non-empty.

    The pipeline treats a step folder without `_done.json` (or with a missing/empty artifact) as
    unfinished and re-runs it, so call this last in a notebook.
    """
    step = Path(step)
    missing = [r for r in required if not (step / r).exists() or (step / r).stat().st_size == 0]
    if missing:
        raise RuntimeError(f"step {step.name} is incomplete: missing or empty {missing}")
    files = {r: (step / r).stat().st_size for r in required}
    return write_json(step / DONE_FILE, {"artifacts": files, **info})


def step_done(step: str | Path) -> bool:
    """True when `finish_step` ran and every artifact it listed is still there, non-empty."""
    step = Path(step)
    if not (step / DONE_FILE).exists():
        return False
    listed = read_json(step / DONE_FILE).get("artifacts", {})
    return all((step / r).exists() and (step / r).stat().st_size > 0 for r in listed)
