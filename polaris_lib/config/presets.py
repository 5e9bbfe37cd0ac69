"""Named presets: the table of run configs, from the CPU toy to the paper's scale.

Three scales, one codebase (docs/architecture.md "Backends"):
- `tiny`: CPU, the kit's own toy model; the whole pipeline in minutes (the embedded default).
- `tiny-hard`: the same toy, a harder warm start and pool; the ablation's second regime.
- `qwen3-*-24gb`: one consumer GPU, Unsloth LoRA + vLLM; every length scaled from the paper by
  one stated ratio.
- `*-paper`: the paper's values, each citing its source; meant for a multi-GPU engine.

Overrides and notebook parameters on top of a preset: overrides.py; the adapter from a stage
config to `trl.GRPOConfig`: polaris_lib/training/grpo_config.py.
"""

from __future__ import annotations

import dataclasses

from polaris_lib.config.sections import (
    ConfigError,
    CurationConfig,
    EvalConfig,
    ModelConfig,
    ProbeConfig,
    RunConfig,
    StageConfig,
    ToyConfig,
    YarnConfig,
)

# Qwen3-4B stage lengths in tokens (RECIPE.md §5: 40K / 48K / 52K total; 40K = 39,936 response
# + 1,024 prompt) and stage lengths in optimizer steps (boundaries 450, 600, end ~700).
QWEN3_4B_RESPONSE = (39936, 48128, 52224)
QWEN3_4B_STEPS = (450, 150, 100)
# R1-Distill-Qwen-7B: 16K / 24K / 32K, boundaries 520, 890, end ~1480 (RECIPE.md §5).
R1_7B_RESPONSE = (15360, 23552, 31744)
R1_7B_STEPS = (520, 370, 590)
# Qwen3-1.7B: 40K / 48K, two stages (RECIPE.md §5; boundary not published).
QWEN3_1P7B_RESPONSE = (39936, 48128)
# The authors' probe script samples up to 50,000 tokens per response (RECIPE §1).
PROBE_MAX_NEW_TOKENS = 50000


def _tiny() -> RunConfig:
    """CPU toy world: 3 stages in the `make demo` budget on 2 cores."""
    toy = ToyConfig()
    # tokens (= characters): the paper's 40K/48K/52K ratios x 80, the longest worked trace
    # (8 terms, 70-75 tokens) fits only in stage 3; guesses fit everywhere
    stage_len = (64, 72, 80)
    stages = [
        StageConfig(
            stage=i + 1,
            max_steps=20,
            # the longest toy prompt is 34 tokens; 48 + 80 keeps every stage inside the toy's
            # 128 positions, so training never needs YaRN (it trains as the model was built)
            max_prompt_length=48,
            max_completion_length=stage_len[i],
            group_size=8,
            prompts_per_step=16,
            per_device_batch_size=64,
            # 1e-6 is far too low for a 0.3M-parameter model; 3e-4 and up make one Adam step a
            # large random move and collapse it: benchmarks/results/toy_stages*.json
            learning_rate=1e-4,
            weight_decay=0.01,
            save_steps=5,
            seed=i,
        )
        for i in range(3)
    ]
    return RunConfig(
        preset="tiny",
        model=ModelConfig(
            name_or_path="toy",
            device="cpu",
            dtype="float32",
            instruction_suffix="",  # the toy prompt is its own instruction; keeps prompts short
            max_context=toy.max_position_embeddings,
        ),
        toy=toy,
        probe=ProbeConfig(
            dataset="toy",
            n_problems=32,
            n_samples=8,
            temperatures=[0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6],
            max_new_tokens=80,
        ),
        curation=CurationConfig(
            pool="toy", max_problems=256, max_new_tokens=80, checkpoint_every=64
        ),
        stages=stages,
        yarn=YarnConfig(
            factor=1.5,
            original_max_position_embeddings=toy.max_position_embeddings,
            eval_max_lengths=[64, 96, 128],
            n_problems=32,
            n_samples=4,
        ),
        eval=EvalConfig(
            benchmarks=["toy", "aime24", "aime25", "aime26", "hmmt25"],
            # AIME here only proves the harness on the real files (the toy scores 0): one sample
            # per problem does that, and halves the step's cost (the demo's <= 5 min budget).
            # aime26 / hmmt25 (contamination-resistant, no local copy in CI) are skipped with a
            # note where their data is absent, exactly like AIME.
            samples={"toy": 8, "aime24": 1, "aime25": 1, "aime26": 1, "hmmt25": 1},
            max_problems=0,
            temperature=1.0,
            top_k=0,
            # the longest toy response is ~76 tokens: 48 + 80 stays inside the toy's 128
            # positions, so the toy is evaluated with its own RoPE (RunConfig.eval_rope)
            max_new_tokens=80,
            n_bootstrap=1000,
            checkpoints=["base", "stage1", "stage2", "stage3"],
        ),
        notes="CPU, 2 cores: whole pipeline in minutes on the kit's own 309K-parameter Qwen3.",
    )


HARD_TOY = ToyConfig(
    warmstart_shortcut=0.9, shortcut_accuracy=0.3, warmstart_noise=0.01, guess_miss="uninformative"
)
"""The toy world of `tiny-hard`: a teacher that guesses more often (90% on 8 terms), guesses worse
(30% right on 2 terms, 5% from 5 terms on) and uninformatively (a wrong guess is any reachable
sum), and errs rarely per worked step (1%, x2 on a carry). So the policy's difficulty is a
behaviour choice, guess or work it out, and a guessed-at problem is all-0."""


def _tiny_hard() -> RunConfig:
    """The toy in POLARIS's regime (issue 14), at `tiny`'s step budget.

    HARD_TOY's warm start, the pool's long sums only (5-8 terms) and stage 1 at 48 tokens (worked
    sums of 7-8 terms truncate; they fit from stage 2 and 3 on). Why it is POLARIS's regime, as
    measured (benchmarks/results/ablation_tiny-hard.json, docs/results.md):
    - at the warm start the policy guesses on most long sums, and a guess is almost always wrong,
      so many groups are all-0 (the skip rule and rescue have work);
    - its probe curve has a plateau: at low T it mostly guesses on long sums and works out shorter
      ones (greedy held-out accuracy 59% on 5 terms, 18% on 6, 0% on 8: toy warmstart.json);
      more T trades one habit for the other until step errors set in;
    - what a stage learns (work it out) saturates the shorter sums, so the easy-drop has work.
    """
    run = _tiny()
    stage_len = (48, 64, 80)
    stages = [
        dataclasses.replace(st, max_completion_length=stage_len[i])
        for i, st in enumerate(run.stages)
    ]
    return dataclasses.replace(
        run,
        preset="tiny-hard",
        toy=HARD_TOY,
        stages=stages,
        # the authors estimate pass rates and probe at stage 1's length (RECIPE §1-2)
        probe=dataclasses.replace(run.probe, max_new_tokens=stage_len[0]),
        curation=dataclasses.replace(run.curation, max_new_tokens=stage_len[0], toy_terms=[5, 8]),
        notes="CPU toy in POLARIS's regime: uninformative guesses, long sums, stage 1 truncates.",
    )


def _consumer(
    model_id: str,
    ratio: float,
    lora_rank: int,
    prompts_per_step: int,
    micro_batch: int,
    vllm_memory: float,
) -> RunConfig:
    """One 24 GB GPU: Unsloth LoRA + colocated vLLM; paper lengths x `ratio`, paper rules.

    `ratio`, `micro_batch` and `vllm_memory` were chosen with `polaris plan --gpu-memory 24` so
    that every stage fits (the longest length that fits, at the paper's group size of 8).
    """
    response = tuple(int(round(n * ratio / 64)) * 64 for n in QWEN3_4B_RESPONSE)
    stages = [
        StageConfig(
            stage=i + 1,
            max_steps=QWEN3_4B_STEPS[i],
            max_prompt_length=1024,
            max_completion_length=response[i],
            prompts_per_step=prompts_per_step,
            per_device_batch_size=micro_batch,
            learning_rate=1e-5,  # LoRA needs ~10x the full-FT rate (Unsloth GRPO notebooks use 5e-6..5e-5)
            save_steps=25,
        )
        for i in range(3)
    ]
    return RunConfig(
        preset="",
        model=ModelConfig(
            name_or_path=model_id,
            backend="unsloth",
            device="cuda",
            dtype="bfloat16",
            max_context=40960,
            lora_rank=lora_rank,
            use_vllm=True,
            gpu_memory_utilization=vllm_memory,
            gradient_checkpointing=True,
        ),
        probe=ProbeConfig(max_new_tokens=response[0], n_samples=8),
        # RECIPE §2: the recipe's pool. (MATH-500, the local stand-in, is a test set, one that
        # Qwen3 mostly solves 8/8 already; data/overlap.py refuses pools that hold a benchmark.)
        curation=CurationConfig(pool="polaris53k", max_new_tokens=response[0]),
        stages=stages,
        # The last budget goes past Qwen3's 32K native context (RECIPE §6), up to YaRN's
        # 1.5 x 32,768 positions less the prompt: sampling alone fits one 24 GB GPU
        # (scale_out.plan.extrapolation_fit, tests/scale_out/test_plan.py).
        yarn=YarnConfig(
            eval_max_lengths=[
                response[0],
                response[-1],
                int(response[-1] * 1.5),
                int(32768 * 1.5) - 1024,
            ]
        ),
        eval=EvalConfig(max_new_tokens=int(response[-1] * 1.5)),
        notes=f"One 24 GB GPU; every paper length x {ratio:g} (stated ratio), LoRA r={lora_rank}.",
    )


def _paper(
    model_id: str,
    response: tuple[int, ...],
    steps: tuple[int, ...],
    temps: tuple[float, ...],
    max_context: int,
    eval_temperature: float,
) -> RunConfig:
    """The paper's values (RECIPE.md §3); each literal below cites its source."""
    stages = [
        StageConfig(
            stage=i + 1,
            max_steps=steps[i],  # RECIPE §5 stage boundaries
            max_prompt_length=1024,  # RECIPE §3: prompt <= 1024
            max_completion_length=response[i],  # RECIPE §5 length schedule
            temperature=temps[i],  # RECIPE §1 re-probe results per stage
            top_p=1.0,  # RECIPE §3: top_p 1.0 in rollouts
            top_k=0,  # RECIPE §3: top_k disabled in rollouts
            group_size=8,  # RECIPE §3: n = 8
            prompts_per_step=128,  # RECIPE §3: 128 prompts / 1024 trajectories per step
            per_device_batch_size=8,
            learning_rate=1e-6,  # RECIPE §3: AdamW lr 1e-6 constant
            weight_decay=0.01,  # RECIPE §3
            max_grad_norm=1.0,  # RECIPE §3
            clip_low=0.2,  # RECIPE §3: clip-higher low 0.2
            clip_high=0.28,  # RECIPE §3: clip-higher high 0.28
            kl_beta=0.0,  # RECIPE §3: no KL, no reference model
            entropy_coef=0.0,  # RECIPE §3: no entropy bonus
            # The authors' behaviour, so a paper run reproduces what produced the published numbers
            # (the kit's own defaults, used by tiny and consumer presets, are the blog's intent):
            # - verl aggregates the token-mean per packed micro-batch = TRL's bnpo (RECIPE §3 says
            #   "token-mean over the batch", which is dapo; the released trainer did bnpo);
            loss_type="bnpo",
            # - copies re-graded against the replaced group's answer (RECIPE §4, their bug);
            substitution="released",
            # - verl `continue`s past a skipped batch: the step budget counts updates (RECIPE §4);
            skipped_steps="redraw",
            # - rollout rescue is absent from the released code (RECIPE §4): kept on as the blog
            #   describes it, so this is the kit's addition to the authors' runs.
            rescue=True,
            save_steps=25,
        )
        for i in range(len(response))
    ]
    return RunConfig(
        preset="",
        model=ModelConfig(
            name_or_path=model_id,
            device="cuda",
            dtype="bfloat16",
            max_context=max_context,
            use_vllm=True,
            gradient_checkpointing=True,
        ),
        probe=ProbeConfig(
            n_samples=16,  # RECIPE §1: n=16 on AIME24
            # RECIPE §1: the authors' probe script samples up to 50,000 tokens (past Qwen3's
            # 40,960 context the engine's own cap stops a response first; counted as truncated)
            max_new_tokens=PROBE_MAX_NEW_TOKENS,
        ),
        curation=CurationConfig(
            pool="polaris53k",  # RECIPE §2
            samples_per_problem=8,  # RECIPE §2
            # Kit's choice (the authors do not publish it, RECIPE §2): the pass rate is measured
            # at stage 1's length, the budget the curated problems are trained under.
            max_new_tokens=response[0],
        ),
        stages=stages,
        # RECIPE §6: YaRN factor 1.5, attention factor 1.0, Qwen3 pre-training context 32K; the
        # authors evaluate at 96K context with that factor (RECIPE §7: 90K new tokens), past
        # 1.5 x 32K, and the stages past 40,960 (RECIPE §5) train with the same settings
        yarn=YarnConfig(
            factor=1.5,
            original_max_position_embeddings=32768,
            attention_factor=1.0,
            max_context=98304,
        ),
        # RECIPE §7: top_p 1.0, top_k 20, up to 90K new tokens (the authors' eval scripts' default
        # for every model; RECIPE §7 publishes it for Polaris-4B)
        eval=EvalConfig(
            benchmarks=["aime24", "aime25", "amc23", "minerva", "olympiad"],
            temperature=eval_temperature,
            top_p=1.0,
            top_k=20,
            max_new_tokens=90000,
        ),
        notes="Paper scale: 32 H800 (4 nodes x 8) for ~28 days for Qwen3-4B (RECIPE §3, §9).",
    )


_BUILDERS = {
    "tiny": _tiny,
    "tiny-hard": _tiny_hard,
    "qwen3-0.6b-24gb": lambda: _consumer(
        "Qwen/Qwen3-0.6B",
        ratio=0.2,
        lora_rank=64,
        prompts_per_step=16,
        micro_batch=2,
        vllm_memory=0.5,
    ),
    "qwen3-1.7b-24gb": lambda: _consumer(
        "Qwen/Qwen3-1.7B",
        ratio=0.15,
        lora_rank=32,
        prompts_per_step=8,
        micro_batch=4,
        vllm_memory=0.5,
    ),
    "qwen3-4b-24gb": lambda: _consumer(
        "Qwen/Qwen3-4B",
        ratio=0.1,
        lora_rank=32,
        prompts_per_step=4,
        micro_batch=1,
        vllm_memory=0.66,
    ),
    "qwen3-4b-paper": lambda: _paper(
        "Qwen/Qwen3-4B",
        QWEN3_4B_RESPONSE,
        QWEN3_4B_STEPS,
        (1.4, 1.45, 1.5),  # RECIPE §1
        max_context=40960,
        eval_temperature=1.4,  # RECIPE §7: eval T 1.4
    ),
    "qwen3-1.7b-paper": lambda: _paper(
        "Qwen/Qwen3-1.7B",
        QWEN3_1P7B_RESPONSE,
        # Kit's choice: the 1.7B's stage boundary is not published (RECIPE §5); Qwen3-4B's first
        # two stage lengths, whose schedule the 1.7B shares (40K / 48K).
        QWEN3_4B_STEPS[:2],
        (1.5, 1.55),  # RECIPE §1, §5
        max_context=40960,
        eval_temperature=1.4,  # RECIPE §7: the authors' 1.7B validation at its last stage
    ),
    "r1-distill-7b-paper": lambda: _paper(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        R1_7B_RESPONSE,
        R1_7B_STEPS,
        (0.7, 1.0, 1.1),  # RECIPE §1
        max_context=131072,
        eval_temperature=0.8,  # RECIPE §7: the authors' 7B validation at its last stage
    ),
}

PRESETS = tuple(_BUILDERS)


def get_preset(name: str) -> RunConfig:
    """A fresh RunConfig for a named preset."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    cfg = _BUILDERS[name]()
    cfg.preset = name
    return cfg
