"""GPU memory planner: will a preset's stages fit on one GPU, and what to change if not.

Two layers. The formula layer (`ModelSpec`, `TrainSetup`, `estimate`) takes plain numbers and lives
in polaris_lib/scale_out/memory.py with its assumptions. This adapter (`plan_run`) reads a
`RunConfig` and returns one table row per stage, with single changes that would make it fit;
`fitting_overrides` finds one combined set of overrides that makes every stage fit at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from typing import Any

from polaris_lib.config import ConfigError, apply_overrides
from polaris_lib.scale_out.memory import (
    HEADROOM,
    MODEL_SPECS,
    Estimate,
    ModelSpec,
    TrainSetup,
    estimate,
    sampling_fit,
)


def setup_for_stage(run, stage) -> TrainSetup:
    """Map a RunConfig's model and one StageConfig to plain numbers (backend decides the tricks)."""
    unsloth = run.model.backend == "unsloth"
    return TrainSetup(
        prompt_len=stage.max_prompt_length,
        completion_len=stage.max_completion_length,
        group_size=stage.group_size,
        rollouts_per_step=stage.rollouts_per_step,
        micro_batch_rows=stage.per_device_batch_size,
        lora_rank=run.model.lora_rank,
        load_in_4bit=run.model.load_in_4bit,
        gradient_checkpointing=run.model.gradient_checkpointing,
        offload_checkpoints=unsloth,
        # Unsloth's GRPO loss computes log-probs one row at a time (its blog: 78.3 GB -> 9.8 GB
        # at 8 rows); plain TRL 1.15 projects through its fused LM head in tiles and never holds
        # the full logits (memory.fused_head_bytes).
        logits_chunk_rows=1 if unsloth else None,
        fused_lm_head=not unsloth,
        use_vllm=run.model.use_vllm,
        shared_vllm_weights=unsloth,
        gpu_memory_utilization=run.model.gpu_memory_utilization if run.model.use_vllm else None,
    )


def _fits(spec: ModelSpec, s: TrainSetup, gpu_gb: float) -> Estimate | None:
    """The estimate if its total fits (vLLM's pool size is then a separate, tunable knob)."""
    est = estimate(spec, s, gpu_gb)
    return est if est.total <= gpu_gb * (1 - HEADROOM) else None


def suggest(spec: ModelSpec, s: TrainSetup, gpu_gb: float) -> list[str]:
    """Single changes that make the stage fit, each with the total it would reach."""
    out: list[str] = []

    def tell(label: str, cand: TrainSetup) -> None:
        est = _fits(spec, cand, gpu_gb)
        if est is not None:
            out.append(
                f"{label}: {est.total:.1f} GB"
                + (f" with {est.split_problem}" if est.split_problem else "")
            )

    if s.lora_rank == 0:
        tell("use LoRA (model.lora_rank=32)", dataclasses.replace(s, lora_rank=32))
    if not s.load_in_4bit:
        tell("load in 4 bit (model.load_in_4bit=True)", dataclasses.replace(s, load_in_4bit=True))
    rows = s.micro_batch_rows // 2
    while rows >= 1:  # smaller micro-batch: same recipe, more accumulation steps
        if s.rollouts_per_step % rows == 0 and _fits(
            spec, dataclasses.replace(s, micro_batch_rows=rows), gpu_gb
        ):
            tell(
                f"per_device_batch_size {s.micro_batch_rows} -> {rows}",
                dataclasses.replace(s, micro_batch_rows=rows),
            )
            break
        rows //= 2
    for g in range(s.group_size - 1, 1, -1):  # changes the recipe (paper n = 8): listed after
        cand = dataclasses.replace(
            s, group_size=g, rollouts_per_step=s.rollouts_per_step // s.group_size * g
        )
        if cand.rollouts_per_step % s.micro_batch_rows == 0 and _fits(spec, cand, gpu_gb):
            tell(f"group_size {s.group_size} -> {g} (changes the recipe)", cand)
            break
    lo, hi = 0, s.completion_len // 256  # largest completion length (multiple of 256) that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        ok = _fits(spec, dataclasses.replace(s, completion_len=mid * 256), gpu_gb)
        lo, hi = (mid, hi) if ok else (lo, mid - 1)
    if 0 < lo * 256 < s.completion_len:  # never suggest a length the stage already has
        tell(
            f"max_completion_length {s.completion_len} -> {lo * 256}",
            dataclasses.replace(s, completion_len=lo * 256),
        )
    est = estimate(spec, s, gpu_gb)
    if est.split_problem and _fits(spec, s, gpu_gb):
        out.insert(0, f"{est.split_problem}: {est.total:.1f} GB")
    if not out:
        out.append(
            "no single change fits; combine 4-bit, micro-batch 1 and a shorter length, or use a larger GPU"
        )
    return out


def spec_for(run) -> ModelSpec:
    """The ModelSpec of a run's model (the planner covers the GPU presets' models)."""
    name = run.model.name_or_path
    if name not in MODEL_SPECS:
        known = ", ".join(MODEL_SPECS)
        raise ValueError(
            f"plan: no architecture numbers for {name!r}; known: {known}. Add a "
            "ModelSpec from its config.json to polaris_lib.scale_out.memory.MODEL_SPECS"
        )
    return MODEL_SPECS[name]


def plan_run(run_cfg, gpu_memory_gb: float, spec: ModelSpec | None = None):
    """One row per stage: memory by component (GB), total, fits, tokens per step, suggestions."""
    import pandas as pd  # deferred: the formula layer needs no pandas

    if not (isinstance(gpu_memory_gb, int | float) and math.isfinite(gpu_memory_gb)) or (
        gpu_memory_gb <= 0
    ):
        raise ValueError(
            f"GPU memory must be a positive number of GiB (e.g. 24), got {gpu_memory_gb!r}"
        )
    spec = spec or spec_for(run_cfg)
    rows = []
    for st in run_cfg.stages:
        s = setup_for_stage(run_cfg, st)
        est = estimate(spec, s, gpu_memory_gb)
        rows.append(
            {
                "stage": st.stage,
                "seq_len": s.seq_len,
                "micro_batch": s.micro_batch_rows,
                "weights_gb": est.weights,
                "trainable_gb": est.trainable,
                "activations_gb": est.activations,
                "logits_gb": est.logits,
                "kv_cache_gb": est.kv_cache,
                "vllm_extra_gb": est.vllm_extra,
                "overhead_gb": est.overhead,
                "total_gb": est.total,
                "gpu_gb": gpu_memory_gb,
                "fits": est.fits,
                "trainable_params": est.trainable_params,
                "tokens_per_step": est.tokens_per_step,
                "suggestions": [] if est.fits else suggest(spec, s, gpu_memory_gb),
            }
        )
    return pd.DataFrame(rows)


def _all_fit(run, spec: ModelSpec, gpu_gb: float) -> bool:
    return all(estimate(spec, setup_for_stage(run, st), gpu_gb).fits for st in run.stages)


def _util_fix(run, spec: ModelSpec, gpu_gb: float) -> float | None:
    """A gpu_memory_utilization inside every stage's working range, or None."""
    ranges = [estimate(spec, setup_for_stage(run, st), gpu_gb).util_range for st in run.stages]
    ranges = [r for r in ranges if r is not None]
    if not ranges or not run.model.use_vllm:
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if lo > hi:
        return None
    mid = (lo + hi) / 2
    value = next((round(mid, d) for d in (2, 3, 4) if lo <= round(mid, d) <= hi), mid)
    return None if value == run.model.gpu_memory_utilization else value


def fitting_overrides(run_cfg, gpu_memory_gb: float, spec: ModelSpec | None = None):
    """One combined set of overrides ({name: value}) under which every stage fits; {} when the
    config fits already, None when nothing the planner knows makes it fit.

    Greedy, cheapest change first (micro-batch: same recipe, more accumulation; LoRA; 4-bit; vLLM's
    memory split; shorter completions; smaller groups, which change the recipe), then every change
    the others made unnecessary is dropped again. Each candidate is applied with the config's own
    validation, so the result is always a valid set of -p values.
    """
    spec = spec or spec_for(run_cfg)
    flags: dict[str, Any] = {}

    def run_with(extra: dict[str, Any]):
        try:
            return apply_overrides(run_cfg, extra) if extra else run_cfg
        except ConfigError:
            return None

    def fits(extra: dict[str, Any]) -> bool:
        run = run_with(extra)
        return run is not None and _all_fit(run, spec, gpu_memory_gb)

    def stage_fits(extra: dict[str, Any], i: int) -> bool:
        run = run_with(extra)
        if run is None:
            return False
        est = estimate(spec, setup_for_stage(run, run.stages[i]), gpu_memory_gb)
        return est.total <= gpu_memory_gb * (1 - HEADROOM)

    def try_set(key: str, value: Any) -> bool:
        if run_with({**flags, key: value}) is None:
            return False
        flags[key] = value
        return True

    if fits(flags):
        return {}
    n = len(run_cfg.stages)
    for i in range(n):  # 1. smaller micro-batches
        st = run_cfg.stages[i]
        rows = st.per_device_batch_size // 2
        while rows >= 1 and not stage_fits(flags, i):
            try_set(f"stages.{i}.per_device_batch_size", rows)
            rows //= 2
    if not fits(flags) and run_cfg.model.lora_rank == 0:  # 2. LoRA
        try_set("model.lora_rank", 32)
    if not fits(flags) and not run_cfg.model.load_in_4bit:  # 3. 4-bit weights
        try_set("model.load_in_4bit", True)
    for i in range(n):  # 4. shorter completions: the longest multiple of 256 that fits
        if stage_fits(flags, i):
            continue
        key = f"stages.{i}.max_completion_length"
        lo, hi = 0, run_cfg.stages[i].max_completion_length // 256
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if stage_fits({**flags, key: mid * 256}, i) else (lo, mid - 1)
        if 0 < lo * 256 < run_cfg.stages[i].max_completion_length:
            try_set(key, lo * 256)
    for i in range(n):  # 5. smaller groups (changes the recipe: listed last)
        st = run_cfg.stages[i]
        for g in range(st.group_size - 1, 1, -1):
            if stage_fits(flags, i):
                break
            try_set(f"stages.{i}.group_size", g)
    run = run_with(flags)
    util = _util_fix(run, spec, gpu_memory_gb) if run is not None else None
    if util is not None:  # 6. vLLM's share of the GPU, inside every stage's working range
        try_set("model.gpu_memory_utilization", util)
    if not fits(flags):
        return None
    for key in list(flags):  # drop what later changes made unnecessary
        trial = {k: v for k, v in flags.items() if k != key}
        if fits(trial):
            flags = trial
    return flags


def as_p_flags(overrides: dict[str, Any]) -> str:
    """Overrides as copy-pasteable `-p NAME=VALUE` flags (JSON values, shell-quoted)."""
    parts = []
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"-p {shlex.quote(f'{key}={text}')}")
    return " ".join(parts)


def extrapolation_fit(run, gpu_memory_gb: float, spec: ModelSpec | None = None):
    """Notebook 04's longest sampling context (prompt + the largest yarn.eval_max_lengths) on one
    GPU: a SamplingFit, plus the context and the positions YaRN provides (original x factor)."""
    spec = spec or spec_for(run)
    y = run.yarn
    context = max(st.max_prompt_length for st in run.stages) + max(y.eval_max_lengths)
    fit = sampling_fit(spec, context, gpu_memory_gb, run.model.load_in_4bit)
    return dict(
        context=context,
        yarn_positions=int(y.original_max_position_embeddings * y.factor),
        original_positions=y.original_max_position_embeddings,
        weights_gb=fit.weights,
        kv_per_sequence_gb=fit.kv_per_sequence,
        sequences=fit.sequences,
    )
