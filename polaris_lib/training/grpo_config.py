"""The one adapter from a stage config to `trl.GRPOConfig` (RECIPE.md §3).

Every GRPOConfig keyword the recipe depends on is set explicitly (`grpo_kwargs`), so a TRL or
Unsloth default changing between releases cannot change the algorithm.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from polaris_lib.config.sections import ConfigError, RunConfig


def grpo_kwargs(
    run: RunConfig, stage: int, temperature: float, output_dir: str, *, num_processes: int = 1
) -> dict[str, Any]:
    """Every `trl.GRPOConfig` keyword the kit sets for stage `stage` of `run`.

    TRL and Unsloth change defaults between releases (TRL 1.15 turns gradient checkpointing on
    and bf16 on by default), so nothing the recipe depends on is left to a default.
    One optimizer step per generation batch: steps_per_generation = gradient_accumulation_steps
    and num_iterations = 1 (RECIPE §3).
    """
    st = run.stage(stage)
    on_cpu = run.model.device == "cpu"
    rows_per_process = st.rollouts_per_step // num_processes
    if st.rollouts_per_step % (num_processes * st.per_device_batch_size):
        raise ConfigError(
            f"stage {stage}: {st.rollouts_per_step} rollouts per step do not split into "
            f"{num_processes} processes x per_device_batch_size {st.per_device_batch_size}"
        )
    accum = rows_per_process // st.per_device_batch_size
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        # --- the algorithm (RECIPE §3) ---
        num_generations=st.group_size,
        beta=st.kl_beta,
        epsilon=st.clip_low,
        epsilon_high=st.clip_high,
        loss_type=st.loss_type,
        scale_rewards=st.scale_rewards,
        entropy_coef=st.entropy_coef,
        use_adaptive_entropy=False,
        top_entropy_quantile=1.0,
        importance_sampling_level="token",
        num_iterations=1,
        mask_truncated_completions=st.mask_truncated_completions,
        # --- vLLM importance-sampling correction: off by default, since the authors' verl has
        # none (RECIPE §3); TRL 1.15 turns it on and Unsloth off, so every key is set here ---
        vllm_importance_sampling_correction=st.vllm_is_correction,
        vllm_importance_sampling_mode=st.vllm_is_mode,
        vllm_importance_sampling_clip_max=st.vllm_is_clip_max,
        vllm_importance_sampling_clip_min=st.vllm_is_clip_min,
        vllm_importance_sampling_cap=None,  # deprecated alias of clip_max; None = not used
        # --- sampling ---
        temperature=float(temperature),
        top_p=st.top_p,
        top_k=st.top_k,
        max_completion_length=st.max_completion_length,
        # --- batch geometry: one optimizer step per generation batch ---
        per_device_train_batch_size=st.per_device_batch_size,
        gradient_accumulation_steps=accum,
        steps_per_generation=accum,
        # --- optimisation ---
        learning_rate=st.learning_rate,
        lr_scheduler_type=st.lr_scheduler,
        warmup_steps=st.warmup_steps,
        weight_decay=st.weight_decay,
        max_grad_norm=st.max_grad_norm,
        optim=st.optimizer,
        adam_beta1=0.9,
        adam_beta2=0.999,
        # skipped_steps='redraw' (the authors' verl): a skipped batch is not a step, so TRL gets
        # room for as many redrawn batches as the budget; the trainer stops at max_steps trained
        max_steps=st.max_steps * (2 if st.skipped_steps == "redraw" else 1),
        seed=st.seed + run.seed,
        # --- machinery ---
        gradient_checkpointing=run.model.gradient_checkpointing,
        bf16=run.model.dtype == "bfloat16" and not on_cpu,
        fp16=run.model.dtype == "float16" and not on_cpu,
        use_cpu=on_cpu,
        use_vllm=run.model.use_vllm,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=run.model.gpu_memory_utilization,
        # the engine holds exactly the stage's prompt + response budget (RunConfig.stage_rope
        # checked it fits, with YaRN where needed), not the model's whole context
        vllm_max_model_length=run.stage_context(stage),
        shuffle_dataset=True,
        disable_dropout=True,
        remove_unused_columns=False,
        save_strategy="steps",
        save_steps=st.save_steps,
        logging_steps=1,
        report_to=st.report_to,
        log_completions=False,
    )
    return kwargs


def to_grpo_config(
    run: RunConfig,
    stage: int,
    temperature: float,
    output_dir: str,
    *,
    num_processes: int = 1,
    **extra: Any,
):
    """Map stage `stage` of `run` to a `trl.GRPOConfig` (see `grpo_kwargs`); `extra` adds fields."""
    from trl import GRPOConfig

    kwargs = grpo_kwargs(run, stage, temperature, output_dir, num_processes=num_processes)
    unknown = (set(extra) | set(kwargs)) - {f.name for f in dataclasses.fields(GRPOConfig)}
    if unknown:
        raise ConfigError(f"to_grpo_config: GRPOConfig has no field(s) {sorted(unknown)}")
    kwargs.update(extra)
    return GRPOConfig(**kwargs)
