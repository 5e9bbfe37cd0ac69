"""One GRPO stage of the POLARIS schedule (RECIPE.md §2-5), as notebook 03 runs it.

Stage k reads (all from the run folder): its training data (stage 1: 02's curated.parquet; stage
k > 1: stage k-1's next_stage_data.parquet, i.e. what survived the > 0.9 easy-drop), its rollout
temperature (stage.temperature if set, else 01 stage k's probe/chosen_temperature) and its
starting policy (stage k-1's checkpoints/stage{k-1}/final; the base model for stage 1). A new
GRPOConfig and trainer per stage: TRL bakes temperature and lengths in at construction.

Crash safety: TRL checkpoints go to checkpoints/stage{k}/trl every `save_steps`; a rerun resumes
from the last complete one (the trainer trims the reward log to that step). The final policy is
written to a temporary folder and renamed, so a half-saved `final` never exists. With LoRA
(Unsloth presets) the adapter is saved and the next stage carries it on (load_policy loads the
adapter folder); it is not merged.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.artifacts import GRPO_STAGE, step_dir
from polaris_lib.config.sections import RunConfig
from polaris_lib.data import build_messages
from polaris_lib.figure_style import run_caption
from polaris_lib.grading.grader import make_reward_fn
from polaris_lib.policy.load import load_policy
from polaris_lib.policy.sampling import LoadedModel, release_engine
from polaris_lib.training.checkpoint_check import check_checkpoint
from polaris_lib.training.easy_drop import easy_drop
from polaris_lib.training.grpo_config import to_grpo_config
from polaris_lib.training.progress import ProgressCallback
from polaris_lib.training.rescue import RESCUE_FILE, RescueBuffer
from polaris_lib.training.trainer import PolarisGRPOTrainer

REQUIRED_COLUMNS = ("problem_id", "problem", "answer")


@dataclass
class StagePlan:
    """What stage k runs with, resolved from the config and the run folder."""

    stage: int
    temperature: float
    temperature_source: str
    start_checkpoint: str | None
    data_path: str
    trl_dir: Path
    final_dir: Path
    resume_from: str | None

    def as_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def load_stage_data(run: RunConfig, stage: int) -> pd.DataFrame:
    """The stage's training problems; fails naming the step to run first or the bad rows."""
    path = artifacts.stage_data_path(run.run_dir, stage)
    if not path.exists():
        before = (
            "02_curate_by_difficulty" if stage == 1 else f"03_grpo_stage with STAGE={stage - 1}"
        )
        raise FileNotFoundError(
            f"stage {stage} trains on {path}, which does not exist: run {before}"
        )
    df = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: training data lacks column(s) {missing}")
    dup = df.problem_id[df.problem_id.duplicated()].tolist()
    if dup:
        raise ValueError(f"{path}: duplicated problem_id(s) {dup[:5]} (the reward log keys on it)")
    if len(df) == 0:
        raise ValueError(f"{path}: no problems left to train on in stage {stage}")
    return df.reset_index(drop=True)


def last_complete_checkpoint(trl_dir: str | Path) -> str | None:
    """Newest checkpoint-N folder whose trainer state and rescue buffer were both written."""
    trl_dir = Path(trl_dir)
    if not trl_dir.is_dir():
        return None
    found = sorted(
        (int(p.name.split("-")[1]), p)
        for p in trl_dir.glob("checkpoint-*")
        if p.name.split("-")[1].isdigit()
    )
    for _, path in reversed(found):
        if (path / "trainer_state.json").exists() and (path / RESCUE_FILE).exists():
            return str(path)
    return None


def plan_stage(run: RunConfig, stage: int) -> StagePlan:
    """Resolve data, temperature, starting checkpoint and resume point of stage k."""
    temperature, source = artifacts.stage_temperature(run, stage)
    ckpt_root = artifacts.checkpoint_dir(run.run_dir, stage)
    trl_dir = ckpt_root / "trl"
    return StagePlan(
        stage=stage,
        temperature=temperature,
        temperature_source=source,
        start_checkpoint=artifacts.policy_checkpoint(run.run_dir, stage),
        data_path=str(artifacts.stage_data_path(run.run_dir, stage)),
        trl_dir=trl_dir,
        final_dir=ckpt_root / "final",
        resume_from=last_complete_checkpoint(trl_dir),
    )


def to_train_dataset(problems: pd.DataFrame, suffix: str):
    """TRL dataset: conversational prompt + the columns the reward and the log need."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [build_messages(p, suffix) for p in problems.problem],
            "answer": [str(a) for a in problems.answer],
            "problem_id": [str(p) for p in problems.problem_id],
        }
    )


def final_complete(final_dir: str | Path) -> bool:
    """A saved final policy (model or adapter) with its stage summary."""
    final_dir = Path(final_dir)
    return artifacts.holds_weights(final_dir) and (Path(final_dir) / "stage_done.json").exists()


def build_trainer(run: RunConfig, plan: StagePlan, out: Path, problems: pd.DataFrame):
    """A PolarisGRPOTrainer for this stage (policy loaded from plan.start_checkpoint)."""

    st = run.stage(plan.stage)
    # The stage's own context: YaRN where its prompt + response pass the native context
    # (RunConfig.stage_rope), and an Unsloth engine sized to the stage, not the model's 40,960.
    model, tokenizer = load_policy(
        run,
        plan.start_checkpoint,
        run.stage_rope(plan.stage),
        for_training=True,
        max_seq_length=run.stage_context(plan.stage),
    )
    # Under accelerate/torchrun each process generates its share of the step's rollouts.
    procs = int(os.environ.get("WORLD_SIZE", "1"))
    args = to_grpo_config(run, plan.stage, plan.temperature, str(plan.trl_dir), num_processes=procs)
    buffer = RescueBuffer.load(plan.start_checkpoint) if plan.start_checkpoint else RescueBuffer()
    return PolarisGRPOTrainer(
        model=model,
        reward_funcs=make_reward_fn(thinking=run.model.thinking),
        args=args,
        train_dataset=to_train_dataset(problems, run.model.instruction_suffix),
        processing_class=tokenizer,
        polaris=st,
        reward_log_path=out / "reward_log.jsonl",
        rescue_buffer=buffer,
        callbacks=[ProgressCallback(plan.stage)],
        backend=run.model.backend,
    )


def train_stage(run: RunConfig, plan: StagePlan, out: str | Path, problems: pd.DataFrame) -> dict:
    """Train (or resume) the stage and save checkpoints/stage{k}/final; returns a summary."""
    out = Path(out)
    if final_complete(plan.final_dir):
        check_checkpoint(
            plan.final_dir,
            f"delete {plan.final_dir} to rebuild the stage's final policy from its last "
            f"checkpoint in {plan.trl_dir}",
        )
        return artifacts.read_json(plan.final_dir / "stage_done.json") | {"reused_final": True}
    if plan.resume_from:
        check_checkpoint(plan.resume_from)  # before any model is loaded: fail fast, name the file
    trainer = build_trainer(run, plan, out, problems)
    try:
        return _train_and_save(trainer, plan, out)
    finally:
        # Before anything else loads a model (03's held-out check loads two more policies, each
        # with its own engine): on 24 GB there is no room beside the trainer's colocated engine.
        release_trainer(trainer)
        del trainer
        _free_memory()


def release_trainer(trainer) -> list[str]:
    """Shut down the trainer's colocated vLLM engine — TRL's (`vllm_generation.llm`) and/or an
    Unsloth fast_inference model's (`vllm_engine`), the same engine counted once — and drop the
    trainer's references to it; returns `release_engine`'s steps. No engine: nothing to do."""
    gen = getattr(trainer, "vllm_generation", None)
    found = [getattr(gen, "llm", None), getattr(trainer.model, "vllm_engine", None)]
    engines = [
        e for i, e in enumerate(found) if e is not None and all(e is not f for f in found[:i])
    ]
    if gen is not None and engines:
        gen.llm = None
    done = []
    while engines:
        done += release_engine(LoadedModel(engines.pop(), None))
    return done


def _free_memory() -> None:
    """Give the (released) trainer's memory back before the next model loads."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_and_save(trainer, plan: StagePlan, out: Path) -> dict:
    """train() and the atomic save of the final policy (train_stage's body while it holds the trainer)."""
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=plan.resume_from)
    seconds = time.perf_counter() - t0
    tmp = plan.final_dir.with_name("final.tmp")
    acc = trainer.accelerator  # several processes: only the main one writes files
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    trainer.save_model(str(tmp))  # every rank (a collective under ZeRO-3); main writes
    summary = {
        "stage": plan.stage,
        "steps": int(trainer.state.global_step),
        "train_seconds": round(seconds, 2),
        "resumed_from": plan.resume_from,
        "rescue_buffer_size": len(trainer.rescue_buffer),
        "rescue_buffer_sha256": trainer.rescue_buffer.digest(),
    }
    if acc.is_main_process:
        trainer.processing_class.save_pretrained(str(tmp))
        trainer.rescue_buffer.save(tmp / RESCUE_FILE)
        artifacts.write_parquet(out / "steps.parquet", steps_table(trainer.state.log_history))
        artifacts.write_json(tmp / "stage_done.json", summary)
        shutil.rmtree(plan.final_dir, ignore_errors=True)
        os.replace(tmp, plan.final_dir)
    acc.wait_for_everyone()
    return summary | {"reused_final": False}


def steps_table(log_history: list[dict]) -> pd.DataFrame:
    """Tidy per-step metrics (one row per optimizer step; TRL's and polaris/ keys unchanged)."""
    rows = [h for h in log_history if "step" in h and "train_runtime" not in h and "reward" in h]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame({"step": pd.Series(dtype=int)})
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def drop_easy(run: RunConfig, stage: int, out: str | Path, problems: pd.DataFrame):
    """Apply the > threshold easy-drop to the stage's reward log; writes the next stage's data."""

    out = Path(out)
    log = artifacts.read_jsonl(out / "reward_log.jsonl")
    if run.stage(stage).easy_drop:
        kept, dropped = easy_drop(log, problems, threshold=run.curation.easy_drop_threshold)
    else:
        kept, dropped = (
            problems.copy(),
            pd.DataFrame(columns=["problem_id", "mean_reward", "count"]),
        )
    artifacts.write_parquet(out / "next_stage_data.parquet", kept)
    artifacts.write_parquet(out / "easy_dropped.parquet", dropped)
    return kept, dropped


def dataset_sizes(run: RunConfig, upto: int) -> pd.DataFrame:
    """Per stage 1..upto: problems trained on, kept and easy-dropped (from the run folder)."""
    rows = []
    for k in range(1, upto + 1):
        folder = step_dir(run.run_dir, GRPO_STAGE, k, create=False)
        path = artifacts.stage_data_path(run.run_dir, k)
        trained = len(pd.read_parquet(path)) if path.exists() else 0
        nxt = folder / "next_stage_data.parquet"
        kept = len(pd.read_parquet(nxt)) if nxt.exists() else trained
        rows.append(dict(stage=k, trained=trained, kept=kept, dropped=trained - kept))
    return pd.DataFrame(rows)


def stage_metrics(
    plan: StagePlan, summary: dict, steps: pd.DataFrame, sizes: pd.DataFrame, heldout: dict
) -> dict:
    """The stage's metrics.json entries (train/... keys)."""
    size = sizes[sizes.stage == plan.stage].iloc[0]

    def col(name: str) -> pd.Series:  # a metric TRL did not log reads as empty
        return steps[name] if name in steps else pd.Series(dtype=float)

    m = {
        "train/stage": plan.stage,
        "train/temperature": plan.temperature,
        "train/temperature_source": plan.temperature_source,
        "train/start_checkpoint": plan.start_checkpoint or "base",
        "train/steps": summary["steps"],
        "train/train_seconds": summary["train_seconds"],
        "train/resumed_from": summary.get("resumed_from"),
        "train/seconds_per_step": float(col("step_time").mean()),
        "train/reward_first": float(col("reward").iloc[0]) if len(steps) else None,
        "train/reward_last": float(col("reward").iloc[-1]) if len(steps) else None,
        "train/reward_mean": float(col("reward").mean()),
        "train/frac_mixed_mean": float(col("polaris/frac_mixed").mean()),
        "train/frac_substituted_mean": float(col("polaris/frac_substituted").mean()),
        "train/steps_skipped": int(col("polaris/skipped").sum()),
        "train/rescued_total": int(col("polaris/rescued").sum()),
        "train/truncation_rate_mean": float(col("completions/clipped_ratio").mean()),
        "train/dataset_size": int(size.trained),
        "train/next_stage_size": int(size.kept),
        "train/easy_dropped": int(size.dropped),
    }
    return m | {f"train/{k}": v for k, v in heldout.items()}


def figure_caption(run: RunConfig, plan: StagePlan) -> str:
    """Figure caption: preset, model, seed, stage, temperature."""
    return run_caption(run, f"stage {plan.stage}", f"T={plan.temperature:g}")
