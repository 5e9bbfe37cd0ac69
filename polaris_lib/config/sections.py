"""Typed configuration for every step of the POLARIS recipe (RECIPE.md §1-7).

One dataclass per pipeline step; one line of documentation under each field (CleanRL style);
`__post_init__` validates combinations and fails fast with a message a user can act on.
Presets (`presets.py`) fill these in; notebooks override single fields from their parameters cell.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

INSTRUCTION_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."
"""The POLARIS repository's instruction, appended once to every problem (RECIPE.md §7): the default
of ModelConfig.instruction_suffix; polaris_lib/data/prompt.py builds every prompt with it."""


class ConfigError(ValueError):
    """A configuration that cannot run, with a message saying what to change."""


REPORT_TO = ("none", "trackio", "tensorboard", "wandb")
"""The loggers a stage may report to (StageConfig.report_to)."""


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


_KINDS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}


def _type_problem(value: Any, tp: Any) -> str | None:
    """None when `value` fits the annotation `tp`, else what was expected (for a message)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return None
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        return " or ".join(p for p in problems if p)
    if tp is type(None):
        return None if value is None else "null"
    if origin is Literal:
        return None if value in args else "one of " + ", ".join(repr(a) for a in args)
    if dataclasses.is_dataclass(tp):
        return None if isinstance(value, tp) else f"a {tp.__name__} section"
    if origin is list:
        if not isinstance(value, list):
            return f"a list of {_describe(args[0])}"
        bad = [v for v in value if _type_problem(v, args[0]) is not None]
        return f"a list of {_describe(args[0])} (bad item {bad[0]!r})" if bad else None
    if origin is dict:
        if not isinstance(value, dict):
            return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
        for k, v in value.items():
            if _type_problem(k, args[0]) or _type_problem(v, args[1]):
                return (
                    f"a mapping of {_describe(args[0])} to {_describe(args[1])} (bad {k!r}: {v!r})"
                )
        return None
    if tp is bool:
        return None if isinstance(value, bool) else _KINDS[bool]
    if tp is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else _KINDS[int]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            ok = ok and math.isfinite(value)
        except OverflowError:  # an int too large for a float
            ok = False
        return None if ok else _KINDS[float]
    if tp is str:
        return None if isinstance(value, str) else _KINDS[str]
    return None


def _describe(tp: Any) -> str:
    return _KINDS.get(tp, getattr(tp, "__name__", str(tp)))


def _check_types(obj: Any, where: str) -> None:
    """Every field of a config dataclass holds a value of its annotated type (ConfigError if not).

    Runs first in each __post_init__, so a mistyped override (`-p stages.0.learning_rate 1e-4x`,
    `-p seed NaN`, `-p stages.0.max_steps 2.5`) fails while the config is resolved, before a run
    touches any file.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = _type_problem(value, hints[f.name])
        if problem is not None:
            raise ConfigError(f"{where}: {f.name} must be {problem}, got {value!r}")


def _section(cls: type, value: Any, name: str) -> Any:
    """Build one config section from its dict form (ConfigError for a non-dict or unknown key)."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"config: {name} is a section of fields, not {value!r}; set one of its fields "
            f"instead (e.g. -p {name}.<field> VALUE)"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"config: {name} has no field {unknown[0]!r}; known: {sorted(known)}")
    return cls(**value)


CHECKPOINT_NAME = re.compile(r"base|final|stage[1-9][0-9]*")
"""The names eval.checkpoints may hold."""


GUESS_MISSES = ("near", "uninformative")
"""What a wrong guess of the toy teacher is (ToyConfig.guess_miss)."""


@dataclass
class ToyConfig:
    """The embedded toy world (polaris_lib/toy/task.py): task, tiny Qwen3 model and warm start."""

    seed: int = 0
    """Seed for the task generator, the model init and the warm start (all deterministic on CPU)."""
    min_terms: int = 2
    """Fewest numbers in a toy problem (difficulty knob: more terms = longer trace, harder)."""
    max_terms: int = 8
    """Most numbers in a toy problem (8 terms: a ~76-token response, past stage 1's budget)."""
    max_value: int = 5
    """Largest operand value (operands are 1..max_value; 5 keeps the addition table small enough
    to learn in the 600-step warm start, 9 did not)."""
    modulus: int = 0
    """0 = plain sums; m >= 2 = sums modulo m (single-digit steps, but modular addition was not
    learned at all in 600 warm-start steps: grokking-slow, so it is off by default)."""
    hidden_size: int = 128
    """Hidden size of the tiny Qwen3 model (the issue caps it at 256)."""
    intermediate_size: int = 256
    """MLP width of the tiny model (2 x hidden keeps a warm-start step cheap on a CPU)."""
    num_layers: int = 2
    """Transformer layers of the tiny model."""
    num_heads: int = 4
    """Attention heads of the tiny model."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention, as in Qwen3)."""
    max_position_embeddings: int = 128
    """Context the toy model is built with (its 'pre-training' context; 8-term items fit, 10 don't)."""
    rope_theta: float = 10000.0
    """RoPE base frequency of the toy model."""
    warmstart_steps: int = 900
    """Supervised warm-start steps: short on purpose, so the policy is neither hopeless nor perfect."""
    warmstart_lr: float = 3e-3
    """Warm-start peak learning rate (linear warm-up, cosine decay)."""
    warmstart_batch_size: int = 64
    """Warm-start batch size (sequences)."""
    warmstart_max_terms: int = 8
    """Hardest problems shown during warm start."""
    warmstart_noise: float = 0.04
    """Per-step error rate of the warm start's sloppy teacher (doubled on a carry): the policy
    learns the right mode with calibrated mistakes, which T=1 sampling makes and RL removes."""
    warmstart_shortcut: float = 0.8
    """How often the warm-start teacher skips the work and guesses (`<think>~N</think>`) on the
    hardest items; never on the easiest, linear in between (long sums tempt the shortcut). The
    policy learns to sometimes guess, and RL learns when working it out pays: a behaviour choice,
    as in real reasoning models. 0 = always work it out."""
    shortcut_accuracy: float = 0.6
    """How often the teacher's guess is right on 2 terms (0.1 less per extra term, at least 0.05);
    `guess_miss` says what a wrong guess is."""
    guess_miss: str = "near"
    """A wrong guess of the teacher: "near" = off by 1 to 3 (the policy's learned guess then
    centres on the true sum and is often right: little for RL to fix); "uninformative" = any other
    sum the terms could give, uniformly (the guess carries no information, so a problem the policy
    only guesses at is all-0: the hard regime's source of all-0 groups)."""

    def __post_init__(self) -> None:
        _check_types(self, "toy")
        _require(self.seed >= 0, "toy: seed must be >= 0")
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"):
            _require(getattr(self, name) >= 1, f"toy: {name} must be >= 1")
        _require(self.max_position_embeddings >= 1, "toy: max_position_embeddings must be >= 1")
        _require(self.rope_theta > 0, "toy: rope_theta must be > 0")
        _require(self.warmstart_lr > 0, "toy: warmstart_lr must be > 0")
        _require(self.warmstart_batch_size >= 1, "toy: warmstart_batch_size must be >= 1")
        _require(2 <= self.min_terms <= self.max_terms, "toy: need 2 <= min_terms <= max_terms")
        _require(
            self.min_terms <= self.warmstart_max_terms,
            "toy: warmstart_max_terms must be >= min_terms",
        )
        _require(1 <= self.max_value <= 9, "toy: max_value must be a single digit (1..9)")
        _require(0.0 <= self.warmstart_shortcut < 1.0, "toy: warmstart_shortcut must be in [0, 1)")
        _require(0.0 <= self.shortcut_accuracy <= 1.0, "toy: shortcut_accuracy must be in [0, 1]")
        _require(
            self.guess_miss in GUESS_MISSES,
            f"toy: guess_miss must be one of {GUESS_MISSES}, got {self.guess_miss!r}",
        )
        _require(self.hidden_size <= 256, "toy: hidden_size must be <= 256 (a CPU-sized model)")
        _require(
            self.hidden_size % self.num_heads == 0,
            "toy: hidden_size must be divisible by num_heads",
        )
        _require(
            self.num_heads % self.num_kv_heads == 0,
            "toy: num_heads must be divisible by num_kv_heads",
        )
        _require(self.modulus == 0 or self.modulus >= 2, "toy: modulus must be 0 (off) or >= 2")
        _require(0.0 <= self.warmstart_noise < 0.5, "toy: warmstart_noise must be in [0, 0.5)")
        _require(self.warmstart_steps >= 1, "toy: warmstart_steps must be >= 1")


@dataclass
class ModelConfig:
    """Which policy to load and on what backend (polaris_lib/policy/load.py)."""

    name_or_path: str = "toy"
    """Hub id, local folder, or "toy" for the kit's own tiny model (built by polaris_lib.toy.task)."""
    backend: Literal["transformers", "unsloth"] = "transformers"
    """transformers (CPU or GPU, plain TRL) or unsloth (GPU only: LoRA + vLLM fast_inference)."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    """Where to run; auto = cuda when available, else cpu."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights/compute dtype; bf16 on GPU, float32 on CPU (bf16 gives no speed-up there)."""
    thinking: bool = True
    """Thinking model: a response must close </think> before its answer counts."""
    instruction_suffix: str = INSTRUCTION_SUFFIX
    """Appended once to every problem (RECIPE.md §7)."""
    max_context: int = 40960
    """Native context of the model (max_position_embeddings); stages must fit unless YaRN is on."""
    lora_rank: int = 0
    """LoRA rank; 0 = full fine-tuning (CPU toy, paper presets)."""
    lora_alpha: int = 0
    """LoRA alpha; 0 = 2 x rank (Unsloth's GRPO notebooks)."""
    load_in_4bit: bool = False
    """Load the base weights in 4 bit (Unsloth/bitsandbytes, GPU only)."""
    use_vllm: bool = False
    """Roll out with vLLM (Unsloth fast_inference colocated); GPU only."""
    gpu_memory_utilization: float = 0.6
    """Fraction of GPU memory vLLM may take for weights + KV cache when colocated (on vLLM's CPU
    backend a fraction of host RAM; the CPU lane sets VLLM_CPU_KVCACHE_SPACE instead)."""
    enforce_eager: bool = False
    """vLLM: run the model eagerly (no CUDA graphs / torch.compile). Starts much faster (on CPU the
    first compile takes ~77 s), decodes slower; the CPU lane and its tests use it."""
    allow_vllm_cpu: bool = False
    """Opt in to vLLM's CPU backend (the `vllm-cpu` package of `make test-vllm`): lets use_vllm run
    without a CUDA GPU, transformers backend only. Off everywhere else, so a GPU preset on a
    machine without a GPU still fails early."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (needed at long lengths on a 24 GB GPU; TRL 1.15 defaults
    it on, so it is always passed explicitly)."""

    def __post_init__(self) -> None:
        _check_types(self, "model")
        _require(self.name_or_path.strip() != "", "model: name_or_path must not be empty")
        _require(
            not any(ord(c) < 32 or ord(c) == 127 for c in self.name_or_path),
            "model: name_or_path must not contain control characters (newlines, tabs)",
        )
        _require(self.max_context >= 1, "model: max_context must be >= 1")
        _require(self.lora_alpha >= 0, "model: lora_alpha must be >= 0 (0 = 2 x rank)")
        _require(self.lora_rank >= 0, "model: lora_rank must be >= 0 (0 = full fine-tuning)")
        _require(
            0.05 <= self.gpu_memory_utilization <= 0.95,
            "model: gpu_memory_utilization must be within [0.05, 0.95]",
        )
        if self.backend == "unsloth":
            _require(
                self.device != "cpu",
                "model: the unsloth backend needs a GPU; use preset 'tiny' on CPU",
            )
        if self.allow_vllm_cpu:
            _require(
                self.backend == "transformers" and not self.load_in_4bit,
                "model: allow_vllm_cpu (vLLM's CPU backend) works with backend 'transformers' "
                "and full-precision weights only (Unsloth's fast_inference and 4-bit need a GPU)",
            )
        if self.load_in_4bit or (self.use_vllm and not self.allow_vllm_cpu):
            _require(
                self.device != "cpu",
                "model: use_vllm / load_in_4bit need a CUDA GPU; on CPU use preset 'tiny' or set "
                "use_vllm=False, load_in_4bit=False (or model.allow_vllm_cpu=True for vLLM's CPU "
                "backend, `make test-vllm`)",
            )
        # Unsloth loads the weights in model.dtype: full fine-tuning there would be pure bf16
        # AdamW (a 1e-6 step rounds away); backend 'transformers' keeps fp32 master weights.
        _require(
            self.backend != "unsloth" or self.lora_rank > 0,
            "model: full fine-tuning (lora_rank 0) on the unsloth backend would train bf16 "
            "weights without fp32 master copies; set lora_rank > 0 (LoRA) or use backend "
            "'transformers' for full fine-tuning",
        )


@dataclass
class ProbeConfig:
    """Temperature probe (RECIPE.md §1): accuracy and distinct-4 over a temperature grid."""

    dataset: str = "aime24"
    """Catalog name of the probe problems (the paper probed on AIME24)."""
    n_problems: int = 30
    """Problems to probe (first n after a seeded shuffle); 0 = all."""
    n_samples: int = 16
    """Samples per problem and temperature (paper: 16)."""
    temperatures: list[float] = field(
        default_factory=lambda: [0.6, 0.8, 1.0, 1.2, 1.3, 1.4, 1.45, 1.5, 1.55, 1.6]
    )
    """Grid of temperatures to probe, ascending."""
    top_p: float = 1.0
    """Nucleus cut-off during the probe (paper rollouts: 1.0)."""
    top_k: int = 0
    """Top-k during the probe; 0 = disabled (paper rollouts)."""
    max_new_tokens: int = 32768
    """Response budget during the probe."""
    robust_tolerance: float = 0.005
    """A drop (absolute accuracy) below the plateau level small enough to ignore, on top of the
    statistical margin. RECIPE §1 calls 0.6-1.4 flat yet puts 1.45, one point below the peak,
    outside the robust zone: the band is under one point; half a point keeps a resolvable
    one-point dip out and lets a large probe settle on the paper's 1.4 (tests/probe)."""
    significance: float = 0.05
    """One-sided level of the paired bootstrap: a temperature leaves the robust zone when its
    accuracy is below the plateau with this error rate (0.05: tests/probe/test_probe_noise.py)."""
    n_bootstrap: int = 1000
    """Problem resamples of the paired bootstrap (the same resamples for every temperature)."""
    stability_resamples: int = 200
    """Problem resamples on which the whole stage-1 rule is rerun to report how stable the choice
    is (probe/choice_stability)."""
    collapse_drop: float = 0.10
    """Accuracy more than this below the best marks the collapse zone."""
    match_tolerance: float = 0.02
    """Re-probe (stage > 1): distinct-4 within this of the previous stage's counts as a match."""
    override_temperature: float | None = None
    """Use this temperature instead of the automatic choice (recorded as an override)."""

    def __post_init__(self) -> None:
        _check_types(self, "probe")
        _require(self.n_problems >= 0, "probe: n_problems must be >= 0 (0 = all)")
        _require(0 < self.top_p <= 1, "probe: top_p must be in (0, 1]")
        _require(self.top_k >= 0, "probe: top_k must be >= 0 (0 = disabled)")
        _require(self.max_new_tokens >= 1, "probe: max_new_tokens must be >= 1")
        _require(
            self.override_temperature is None or self.override_temperature > 0,
            "probe: override_temperature must be > 0 (or null for the automatic choice)",
        )
        _require(len(self.temperatures) >= 2, "probe: need at least two temperatures in the grid")
        _require(
            list(self.temperatures) == sorted(self.temperatures),
            "probe: temperatures must be ascending",
        )
        _require(all(t > 0 for t in self.temperatures), "probe: temperatures must be > 0")
        _require(self.n_samples >= 2, "probe: n_samples must be >= 2 (distinct-4 pools samples)")
        _require(
            0 <= self.robust_tolerance < self.collapse_drop,
            "probe: need 0 <= robust_tolerance < collapse_drop",
        )
        _require(0 < self.significance < 0.5, "probe: significance must be in (0, 0.5)")
        _require(self.n_bootstrap >= 100, "probe: n_bootstrap must be >= 100")
        _require(self.stability_resamples >= 1, "probe: stability_resamples must be >= 1")


@dataclass
class CurationConfig:
    """Difficulty curation (RECIPE.md §2): pass rate k/8 by the policy being trained."""

    pool: str = "polaris53k"
    """Catalog name of the training pool."""
    max_problems: int = 0
    """Cap on pool size (seeded sample); 0 = whole pool."""
    samples_per_problem: int = 8
    """Samples used to estimate the pass rate k/n (paper: 8)."""
    drop_solved_all: bool = True
    """Drop problems solved n/n (paper: yes; keep 0/n)."""
    easy_drop_threshold: float = 0.9
    """Between stages: drop problems whose mean reward over the stage is above this (paper 0.9)."""
    max_new_tokens: int = 32768
    """Response budget while estimating pass rates."""
    checkpoint_every: int = 256
    """Problems between partial-progress checkpoints (a crash resumes from the last one)."""
    toy_terms: list[int] = field(default_factory=list)
    """Toy pool only: [fewest, most] terms of its problems (empty = the world's whole range);
    `tiny-hard` trains on the long sums only."""

    def __post_init__(self) -> None:
        _check_types(self, "curation")
        _require(self.max_problems >= 0, "curation: max_problems must be >= 0 (0 = whole pool)")
        _require(self.max_new_tokens >= 1, "curation: max_new_tokens must be >= 1")
        _require(self.checkpoint_every >= 1, "curation: checkpoint_every must be >= 1")
        _require(
            not self.toy_terms
            or (len(self.toy_terms) == 2 and 2 <= self.toy_terms[0] <= self.toy_terms[1]),
            f"curation: toy_terms must be empty or [fewest, most] with 2 <= fewest <= most, "
            f"got {self.toy_terms}",
        )
        _require(self.samples_per_problem >= 1, "curation: samples_per_problem must be >= 1")
        _require(
            0.0 < self.easy_drop_threshold <= 1.0,
            "curation: easy_drop_threshold must be in (0, 1]",
        )


@dataclass
class StageConfig:
    """One GRPO stage (RECIPE.md §3-5): its length, temperature and the POLARIS tricks."""

    stage: int = 1
    """Stage number (1-based); stage k starts from stage k-1's checkpoint."""
    max_steps: int = 450
    """Optimizer steps in this stage (Qwen3-4B: 450 / 150 / ~100)."""
    max_prompt_length: int = 1024
    """Prompt tokens (paper: <= 1024)."""
    max_completion_length: int = 39936
    """Response tokens in this stage (Qwen3-4B stage 1: 40K total = 39,936 response)."""
    temperature: float | None = None
    """Rollout temperature; None = the probe's choice for this stage."""
    top_p: float = 1.0
    """Rollout top-p (paper: 1.0)."""
    top_k: int = 0
    """Rollout top-k; 0 = disabled (paper)."""
    group_size: int = 8
    """Rollouts per prompt, GRPO's n (paper: 8)."""
    prompts_per_step: int = 128
    """Prompts per optimizer step (paper: 128 -> 1,024 trajectories)."""
    per_device_batch_size: int = 8
    """Rows per forward/backward micro-batch per device; gradient accumulation covers the rest."""
    learning_rate: float = 1e-6
    """AdamW learning rate, constant (paper: 1e-6)."""
    lr_scheduler: str = "constant"
    """Learning-rate schedule (paper: constant)."""
    warmup_steps: int = 0
    """Warm-up steps (paper: none)."""
    weight_decay: float = 0.01
    """AdamW weight decay (paper: 0.01)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (paper: 1.0)."""
    clip_low: float = 0.2
    """PPO clip epsilon below 1 (paper: 0.2)."""
    clip_high: float = 0.28
    """PPO clip epsilon above 1, 'clip-higher' (paper: 0.28)."""
    kl_beta: float = 0.0
    """KL coefficient; 0 = no reference model is loaded (paper: no KL)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient (paper: none, 0); TRL's entropy_coef, set explicitly."""
    loss_type: str = "dapo"
    """Loss aggregation (TRL's loss_type): dapo = token-mean over the whole generation batch
    (RECIPE §3, the paper's description); bnpo = token-mean per micro-batch, then the mean over
    micro-batches, which is what the authors' verl ran (its loss is aggregated per packed
    micro-batch); grpo = per-sequence mean, then the mean over sequences."""
    optimizer: Literal["adamw_torch", "sgd"] = "adamw_torch"
    """Optimizer (paper: AdamW). 'sgd' exists for the ablation: under Adam's per-parameter
    normalisation, duplicating groups (substitution) mostly adds variance; under SGD it rescales
    the gradient (benchmarks/ablation.py)."""
    scale_rewards: str = "group"
    """Advantage normalisation: (r - mean) / (std + eps) within the group (GRPO)."""
    mask_truncated_completions: bool = False
    """Exclude truncated responses from the loss (the paper does not; set explicitly)."""
    vllm_is_correction: bool = False
    """Reweight the loss by the trainer/vLLM log-prob ratio (TRL's vllm_importance_sampling_*).
    Off: the authors' verl has no such correction (RECIPE §3); TRL 1.15 defaults it on
    (sequence_mask, cap 3.0) and Unsloth's config off, so the kit always sets it."""
    vllm_is_mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = (
        "token_truncate"
    )
    """How the ratio is applied when vllm_is_correction is on (per token or per sequence; clipped
    or masked). A sequence-level ratio over a 40K-token response can mask a whole rollout."""
    vllm_is_clip_max: float | None = 3.0
    """Upper bound of the ratio when vllm_is_correction is on (None = no upper bound)."""
    vllm_is_clip_min: float | None = None
    """Lower bound of the ratio when vllm_is_correction is on (None = no lower bound)."""
    substitution: Literal["intent", "released", "off"] = "intent"
    """Intra-batch informative substitution of all-0/all-1 groups by copies of mixed groups
    (RECIPE §4). 'intent': the blog's intent, a copy keeps its donor's answer and rewards (so it
    trains as a second copy of an informative group); 'released': what the authors' code did, the
    copy is re-graded against the replaced group's answer, scores ~0 and gets ~zero advantage
    (its tokens still count in the loss normaliser); 'off': groups are trained as sampled.
    (true/false are read as intent/off.)"""
    low_mixed_policy: Literal["skip", "train_mixed", "none"] = "skip"
    """With too few mixed groups: 'skip' the step (authors' code), 'train_mixed' on what is mixed,
    or 'none': train on the batch as it is (plain GRPO; a batch with no mixed group then moves
    the weights only through AdamW's momentum and weight decay)."""
    min_mixed_fraction: float = 1.0 / 3.0
    """'skip' applies when the mixed fraction is <= this (authors' code: 1/3)."""
    rescue: bool = True
    """Rollout rescue: swap one failed rollout of an all-0 group for the buffered correct one."""
    easy_drop: bool = True
    """Drop problems with stage mean reward > curation.easy_drop_threshold before the next stage."""
    skipped_steps: Literal["count", "redraw"] = "count"
    """What a skipped batch (low-mixed 'skip') costs: 'count' = it uses one of max_steps (the
    kit's budget: max_steps generation batches); 'redraw' = it does not (the authors' verl
    `continue`s without advancing its step counter, so max_steps counts optimizer updates; the
    trainer then draws up to max_steps more batches, at most twice the budget in all)."""
    save_steps: int = 50
    """Checkpoint every this many steps (resume after a crash)."""
    seed: int = 0
    """Seed for this stage's data order and sampling."""
    report_to: str = "none"
    """Where TRL also logs the per-step metrics: none, trackio, tensorboard or wandb (set
    WANDB_MODE=offline for no account). A logging choice only: not part of step fingerprints."""

    def __post_init__(self) -> None:
        if isinstance(self.substitution, bool):  # the switch was a bool before it had modes
            self.substitution = "intent" if self.substitution else "off"
        _check_types(self, f"stage {self.stage}")
        _require(
            self.report_to in REPORT_TO,
            f"stage {self.stage}: report_to must be one of {', '.join(REPORT_TO)}, "
            f"got {self.report_to!r}",
        )
        _require(self.stage >= 1, "stage: stage numbers start at 1")
        k = self.stage
        _require(self.max_steps >= 1, f"stage {k}: max_steps must be >= 1")
        for name in ("max_prompt_length", "max_completion_length", "prompts_per_step"):
            _require(getattr(self, name) >= 1, f"stage {k}: {name} must be >= 1")
        _require(self.per_device_batch_size >= 1, f"stage {k}: per_device_batch_size must be >= 1")
        _require(self.learning_rate > 0, f"stage {k}: learning_rate must be > 0")
        _require(self.warmup_steps >= 0, f"stage {k}: warmup_steps must be >= 0")
        _require(self.weight_decay >= 0, f"stage {k}: weight_decay must be >= 0")
        _require(self.max_grad_norm > 0, f"stage {k}: max_grad_norm must be > 0")
        _require(0 < self.top_p <= 1, f"stage {k}: top_p must be in (0, 1]")
        _require(self.top_k >= 0, f"stage {k}: top_k must be >= 0 (0 = disabled)")
        _require(self.kl_beta >= 0, f"stage {k}: kl_beta must be >= 0")
        _require(self.save_steps >= 1, f"stage {k}: save_steps must be >= 1")
        _require(self.seed >= 0, f"stage {k}: seed must be >= 0")
        _require(self.group_size >= 2, "stage: group_size must be >= 2 (GRPO needs a group)")
        rows = self.prompts_per_step * self.group_size
        _require(
            rows % self.per_device_batch_size == 0,
            f"stage {self.stage}: prompts_per_step x group_size = {rows} rollouts per step must be "
            f"divisible by per_device_batch_size={self.per_device_batch_size}",
        )
        _require(
            0 < self.clip_low < 1 and self.clip_high >= self.clip_low,
            f"stage {self.stage}: need 0 < clip_low < 1 and clip_high >= clip_low",
        )
        _require(self.entropy_coef >= 0.0, f"stage {self.stage}: entropy_coef must be >= 0")
        _require(self.temperature is None or self.temperature > 0, "stage: temperature must be > 0")
        _require(0 < self.min_mixed_fraction < 1, "stage: min_mixed_fraction must be in (0, 1)")
        lo, hi = self.vllm_is_clip_min, self.vllm_is_clip_max
        _require(
            lo is None or hi is None or 0 <= lo < hi,
            f"stage {k}: need 0 <= vllm_is_clip_min < vllm_is_clip_max, got {lo} / {hi}",
        )
        _require(
            not (self.vllm_is_correction and lo is None and hi is None),
            f"stage {k}: vllm_is_correction needs vllm_is_clip_min or vllm_is_clip_max",
        )

    @property
    def rollouts_per_step(self) -> int:
        """Trajectories per optimizer step (prompts x group size)."""
        return self.prompts_per_step * self.group_size


@dataclass
class YarnConfig:
    """Training-free length extrapolation with YaRN (RECIPE.md §6)."""

    enabled: bool = True
    """Evaluate with YaRN when prompt + eval.max_new_tokens exceed model.max_context (notebook 05
    loads every checkpoint with it then; the paper's 81.2 / 79.4 at 96K, RECIPE §6-7). A model
    whose own context holds the budget (R1-Distill-7B: 131,072) is evaluated as it is."""
    in_training: bool = True
    """Train a stage with YaRN when its prompt + response exceed model.max_context (Qwen3-4B
    stages 2-3: 49,152 / 53,248 > 40,960, RECIPE §5); a stage that fits keeps the model's RoPE."""
    max_context: int = 0
    """Longest context (prompt + response) YaRN is used at; 0 = original positions x factor. The
    authors keep factor 1.5 and evaluate at 96K context (RECIPE §6-7: their eval sets
    max_num_batched_tokens 96000 with 90,000 new tokens), past 1.5 x 32K: paper presets set 98304."""
    factor: float = 1.5
    """Context scale factor (paper: 1.5)."""
    original_max_position_embeddings: int = 32768
    """Pre-training context the factor scales (Qwen3: 32K)."""
    attention_factor: float = 1.0
    """YaRN attention temperature; 1.0 disables it (paper: it hurt long reasoning)."""
    eval_max_lengths: list[int] = field(default_factory=lambda: [32768, 49152, 65536, 98304])
    """Response budgets for the with/without-YaRN experiment (notebook 04)."""
    n_problems: int = 30
    """Problems in the extrapolation experiment; 0 = all."""
    n_samples: int = 8
    """Samples per problem in the extrapolation experiment."""

    def __post_init__(self) -> None:
        _check_types(self, "yarn")
        _require(
            all(n >= 1 for n in self.eval_max_lengths), "yarn: eval_max_lengths must all be >= 1"
        )
        _require(self.n_problems >= 0, "yarn: n_problems must be >= 0 (0 = all)")
        _require(self.n_samples >= 1, "yarn: n_samples must be >= 1")
        _require(self.factor >= 1.0, "yarn: factor must be >= 1 (it extends the context)")
        _require(self.original_max_position_embeddings > 0, "yarn: original positions must be > 0")
        _require(self.attention_factor > 0, "yarn: attention_factor must be > 0")
        _require(self.max_context >= 0, "yarn: max_context must be >= 0 (0 = positions x factor)")

    @property
    def context(self) -> int:
        """Longest prompt + response YaRN runs at (max_context, else original x factor)."""
        return self.max_context or int(self.original_max_position_embeddings * self.factor)


@dataclass
class EvalConfig:
    """Evaluation protocol (RECIPE.md §7): avg@k with intervals, pass@k, lengths."""

    benchmarks: list[str] = field(default_factory=lambda: ["aime24", "aime25"])
    """Catalog names to evaluate (aime24, aime25, amc23, minerva, olympiad, math500, gsm8k, toy)."""
    samples: dict[str, int] = field(
        default_factory=lambda: {
            "aime24": 32,
            "aime25": 32,
            "amc23": 8,
            "minerva": 4,
            "olympiad": 4,
        }
    )
    """k for avg@k per benchmark (paper protocol); missing names use default_samples."""
    default_samples: int = 4
    """k for benchmarks not in `samples`."""
    max_problems: int = 0
    """Cap problems per benchmark (small budgets for harness checks); 0 = all."""
    temperature: float = 1.4
    """Sampling temperature (Polaris-4B: 1.4; never above the last training temperature)."""
    top_p: float = 1.0
    """Nucleus cut-off (paper eval: 1.0)."""
    top_k: int = 20
    """Top-k (paper eval: 20)."""
    max_new_tokens: int = 90000
    """Response budget (paper: up to 90K; >= 64K advised)."""
    n_bootstrap: int = 2000
    """Bootstrap resamples over problems for the 95% interval of avg@k."""
    checkpoints: list[str] = field(default_factory=lambda: ["base", "final"])
    """Which checkpoints to evaluate: base, stage1..stageN, final."""
    selection: str = "final"
    """Which checkpoint the run reports: "final" (the last evaluated, no selection) or "best"
    (chosen by avg@k on a random half of each benchmark's problems, reported on the other half,
    and said so in the notebook, metrics.json and the report)."""

    def __post_init__(self) -> None:
        _check_types(self, "eval")
        _require(len(self.benchmarks) >= 1, "eval: list at least one benchmark")
        bad = {b: k for b, k in self.samples.items() if k < 1}
        _require(not bad, f"eval: samples per benchmark must be >= 1, got {bad}")
        _require(self.max_problems >= 0, "eval: max_problems must be >= 0 (0 = all)")
        _require(0 < self.top_p <= 1, "eval: top_p must be in (0, 1]")
        _require(self.top_k >= 0, "eval: top_k must be >= 0 (0 = disabled)")
        _require(self.max_new_tokens >= 1, "eval: max_new_tokens must be >= 1")
        _require(self.n_bootstrap >= 1, "eval: n_bootstrap must be >= 1")
        bad_ck = [c for c in self.checkpoints if not CHECKPOINT_NAME.fullmatch(c)]
        _require(
            not bad_ck,
            f"eval: unknown checkpoint name {bad_ck[0] if bad_ck else ''!r}; use base, final or "
            "stage1..stageN",
        )
        _require(self.temperature > 0, "eval: temperature must be > 0")
        _require(self.default_samples >= 1, "eval: default_samples must be >= 1")
        _require(
            self.selection in ("final", "best"),
            f"eval: selection must be 'final' or 'best', got {self.selection!r}",
        )

    def k_for(self, benchmark: str) -> int:
        """Samples per problem for a benchmark."""
        return self.samples.get(benchmark, self.default_samples)


@dataclass
class RunConfig:
    """A whole POLARIS run: model, every step's config, where artifacts go."""

    preset: str = "tiny"
    """Name of the preset this config was built from."""
    seed: int = 0
    """Global seed (each step derives its own from it)."""
    run_dir: str = "reports/dev"
    """Folder of this run's artifacts (reports/<run_id>); notebooks read and write only there."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy and its backend."""
    toy: ToyConfig | None = None
    """The toy world (tiny preset only)."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """Temperature probe."""
    curation: CurationConfig = field(default_factory=CurationConfig)
    """Difficulty curation."""
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    """GRPO stages in order."""
    yarn: YarnConfig = field(default_factory=YarnConfig)
    """Length extrapolation at inference."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    notes: str = ""
    """Free text: where the preset's numbers come from, what it costs on which hardware."""

    def __post_init__(self) -> None:
        _check_types(self, "run")
        _require(self.seed >= 0, "run: seed must be >= 0")
        _require(len(self.stages) >= 1, "run: need at least one stage")
        for i, st in enumerate(self.stages, start=1):
            _require(
                st.stage == i, f"run: stages must be numbered 1..N in order (got {st.stage} at {i})"
            )
            self.stage_rope(i)  # every training length fits, with YaRN where it needs it
        self.eval_rope()
        # Curation samples the policy as it trains: its own RoPE, its own context. (The probe is
        # not checked: the paper presets probe with the authors' 50,000 tokens, RECIPE §1, and
        # the engine's context cap stops a response first, counted as truncated.)
        for name, budget in (("curation.max_new_tokens", self.curation.max_new_tokens),):
            total = self.prompt_budget + budget
            _require(
                total <= self.model.max_context,
                f"{name}: prompt ({self.prompt_budget}) + {budget} new tokens = {total} exceeds "
                f"the model context {self.model.max_context}; set {name} <= "
                f"{self.model.max_context - self.prompt_budget}",
            )
        for ck in self.eval.checkpoints:
            _require(
                not ck.startswith("stage") or int(ck[5:]) <= len(self.stages),
                f"eval: checkpoint {ck!r} does not exist; this run has {len(self.stages)} stage(s)",
            )
        if self.model.name_or_path == "toy":
            _require(
                self.toy is not None, "run: model 'toy' needs a toy config (use preset 'tiny')"
            )

    @property
    def prompt_budget(self) -> int:
        """Longest prompt any step sends (the stages' max_prompt_length; paper: 1024)."""
        return max(st.max_prompt_length for st in self.stages)

    def stage_context(self, k: int) -> int:
        """Tokens stage k's sequences may reach: prompt + response budget."""
        st = self.stage(k)
        return st.max_prompt_length + st.max_completion_length

    def stage_rope(self, k: int) -> str:
        """RoPE variant stage k trains with: 'none' when it fits model.max_context, else 'yarn'
        (yarn.in_training); ConfigError with the fix when neither holds."""
        total, ctx = self.stage_context(k), self.model.max_context
        if total <= ctx:
            return "none"
        fix = f"set stages.{k - 1}.max_completion_length <= {ctx - self.stage(k).max_prompt_length}"
        _require(
            self.yarn.in_training,
            f"stage {k}: prompt + response = {total} tokens exceeds the model context {ctx}; "
            f"{fix}, or train it with YaRN (yarn.in_training=True)",
        )
        _require(
            total <= self.yarn.context,
            f"stage {k}: prompt + response = {total} tokens exceeds even YaRN's context "
            f"{self.yarn.context}; {fix}, or set yarn.max_context >= {total}",
        )
        return "yarn"

    def eval_budget(self) -> int:
        """Tokens an evaluation sequence may reach: prompt budget + eval.max_new_tokens."""
        return self.prompt_budget + self.eval.max_new_tokens

    def eval_rope(self) -> str:
        """RoPE variant evaluation loads every checkpoint with: 'none' when the eval context fits
        model.max_context, else 'yarn' (yarn.enabled; the paper's setting, RECIPE §6-7);
        ConfigError with the fix when neither fits."""
        total = self.eval_budget()
        if total <= self.model.max_context:
            return "none"
        if self.yarn.enabled:
            _require(
                total <= self.yarn.context,
                f"eval: prompt ({self.prompt_budget}) + eval.max_new_tokens "
                f"({self.eval.max_new_tokens}) = {total} exceeds YaRN's context "
                f"{self.yarn.context}; set yarn.max_context >= {total} or eval.max_new_tokens "
                f"<= {self.yarn.context - self.prompt_budget}",
            )
            return "yarn"
        _require(
            total <= self.model.max_context,
            f"eval: prompt ({self.prompt_budget}) + eval.max_new_tokens "
            f"({self.eval.max_new_tokens}) = {total} exceeds the model context "
            f"{self.model.max_context}; set eval.max_new_tokens <= "
            f"{self.model.max_context - self.prompt_budget} or enable YaRN (yarn.enabled=True)",
        )
        return "none"

    def stage(self, k: int) -> StageConfig:
        """Config of stage k (1-based)."""
        _require(
            1 <= k <= len(self.stages), f"run: no stage {k}; this preset has {len(self.stages)}"
        )
        return self.stages[k - 1]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for config.json and the manifest)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of to_dict."""
        d = dict(d)
        d["model"] = _section(ModelConfig, d["model"], "model")
        d["toy"] = _section(ToyConfig, d["toy"], "toy") if d.get("toy") else None
        d["probe"] = _section(ProbeConfig, d["probe"], "probe")
        d["curation"] = _section(CurationConfig, d["curation"], "curation")
        if not isinstance(d["stages"], list):
            raise ConfigError(
                f"config: stages is a list of stage sections, not {d['stages']!r}; set a field "
                "of one stage (-p stages.0.max_steps 5) or of every stage (-p 'stages.*.max_steps' 5)"
            )
        d["stages"] = [_section(StageConfig, s, f"stages.{i}") for i, s in enumerate(d["stages"])]
        d["yarn"] = _section(YarnConfig, d["yarn"], "yarn")
        d["eval"] = _section(EvalConfig, d["eval"], "eval")
        return cls(**d)
