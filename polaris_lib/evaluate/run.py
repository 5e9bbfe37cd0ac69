"""Evaluation the way POLARIS reports it (RECIPE.md §7): sample, grade, keep every response.

Flow: resolve checkpoints (``base``, ``stage1``..``stageN``, ``final`` = the last stage) -> load
each catalog benchmark -> sample k responses per problem with the preset's settings and grade them
(`policy.rollouts.rollout`: vLLM on a GPU, batched transformers on a CPU) -> one finished part per
(checkpoint, benchmark) pair under ``<step>/pairs/`` (`artifacts.resume`) -> ``responses.parquet``.
A re-run skips pairs already finished with the same settings; `policy.rollouts.regrade` re-scores a
responses table without sampling again. The summary tables live in `polaris_lib.evaluate.tables`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.artifacts.resume import PartStore
from polaris_lib.config.sections import RunConfig
from polaris_lib.data import (
    catalog_entry,
    check_available,
    harness_only,
    load_dataset,
    prompt_texts,
)
from polaris_lib.policy.load import load_policy, lora_request_for, weights_key
from polaris_lib.policy.rollouts import RESPONSE_COLUMNS, rollout
from polaris_lib.policy.rope import yarn_max_length
from polaris_lib.policy.sampling import loaded_model

TOY_EVAL_PROBLEMS = 128
"""Toy test-split problems evaluated when eval.max_problems is 0 (the toy set has no fixed size)."""
SKIPPED_NOTE = "skipped: a harness check on the toy model, and its data is not on this machine"
"""metrics.json value of eval/<benchmark>/skipped (what the report shows for it)."""
PAIRS = "pairs"
"""Sub-folder of the step holding one finished part per (checkpoint, benchmark) pair."""


# ----------------------------------------------------------------------------- what to evaluate
def load_benchmark(name: str, cfg: RunConfig, data_dir: str | Path | None = None) -> pd.DataFrame:
    """A catalog benchmark in the data schema; the toy task draws its held-out test split."""
    limit = cfg.eval.max_problems or None
    if catalog_entry(name).generator:
        n = limit or TOY_EVAL_PROBLEMS
        return load_dataset(name, split="test", toy_cfg=cfg.toy, n=n, seed=cfg.seed)
    return load_dataset(name, data_dir=data_dir, limit=limit)


def benchmarks_to_run(cfg: RunConfig, data_dir=None, log=print) -> list[str]:
    """cfg.eval.benchmarks less the harness checks whose data is not here (each one said once).

    A benchmark whose score means something must load (the runner checks that before step 01);
    a harness check on the toy model (AIME for a 309K-parameter model) is skipped with a note.
    """
    skipped = check_available(cfg, data_dir)
    for name, why in skipped.items():
        log(f"{name}: skipped (a harness check on the toy model; its data is not here: {why})")
    return [b for b in cfg.eval.benchmarks if b not in skipped]


def pair_settings(cfg: RunConfig, benchmark: str, checkpoint: str | None) -> dict:
    """Everything that determines a pair's responses (a pair done with other settings is redone)."""
    ev = cfg.eval
    return dict(
        model=cfg.model.name_or_path,
        checkpoint_path=checkpoint,
        weights=weights_key(cfg, checkpoint),
        k=ev.k_for(benchmark),
        max_problems=ev.max_problems,
        temperature=ev.temperature,
        top_p=ev.top_p,
        top_k=ev.top_k,
        max_new_tokens=ev.max_new_tokens,
        seed=cfg.seed,
        suffix=cfg.model.instruction_suffix,
        thinking=cfg.model.thinking,
        rope=eval_rope(cfg),
        context=eval_context(cfg),
    )


def plan(cfg: RunConfig, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The (checkpoint, benchmark) pairs this config evaluates, with k and problem counts."""
    sizes = {b: len(load_benchmark(b, cfg, data_dir)) for b in benchmarks_to_run(cfg, data_dir)}
    rows = []
    for ck in cfg.eval.checkpoints:
        path = artifacts.named_checkpoint(cfg.run_dir, ck, len(cfg.stages))
        for b, n in sizes.items():
            k = cfg.eval.k_for(b)
            rows.append(
                dict(
                    checkpoint=ck,
                    path=path or cfg.model.name_or_path,
                    benchmark=b,
                    problems=n,
                    k=k,
                    responses=n * k,
                    harness_only=harness_only(cfg, b),
                )
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- running
def eval_rope(cfg: RunConfig) -> str:
    """The RoPE variant every evaluation loads its checkpoints with (`policy.load_policy`):
    YaRN when prompt + eval.max_new_tokens pass the model's context and yarn.enabled, as the
    paper's 81.2 / 79.4 (RECIPE §6-7); `RunConfig.eval_rope`. The exported model records it."""
    return cfg.eval_rope()


def eval_context(cfg: RunConfig) -> int:
    """Context (positions) the evaluation actually runs at: YaRN's (yarn.max_context, else
    original x factor; 98,304 = the paper's "96K" for the paper presets) or the model's own.
    Recorded with every pair (`pair_settings`) and in metrics.json as eval/context."""
    return yarn_max_length(cfg.yarn) if eval_rope(cfg) == "yarn" else cfg.model.max_context


def rollout_settings(settings: dict) -> dict:
    """The `rollout` keywords of a pair's (or an extrapolation run's) settings."""
    keys = ("temperature", "top_p", "top_k", "max_new_tokens", "seed", "suffix", "thinking")
    return dict(n=settings["k"], **{k: settings[k] for k in keys})


def run_evaluation(
    cfg: RunConfig,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    load_fn: Callable | None = None,
    sample_fn: Callable | None = None,
    grader=None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Evaluate every (checkpoint, benchmark) pair of cfg.eval; skip finished ones; write responses.

    Each pair is written atomically (parquet, then its settings json) as soon as it is graded, so
    an interrupted run resumes at the first unfinished pair. A checkpoint whose pairs are all
    finished is not even loaded. `load_fn(cfg, checkpoint)` replaces the kit's loader. Returns the
    combined table (also `<out>/responses.parquet`).
    """
    out = Path(out)
    store = PartStore(out / PAIRS)
    names = benchmarks_to_run(cfg, data_dir, log)
    skipped = [b for b in cfg.eval.benchmarks if b not in names]
    # Recorded for the report: a skipped harness check must say so, not silently vanish.
    artifacts.update_metrics(out, {f"eval/{b}/skipped": SKIPPED_NOTE for b in skipped})
    # The context every number below was measured at (the paper's 81.2 is at 96K with YaRN).
    artifacts.update_metrics(out, {"eval/rope": eval_rope(cfg), "eval/context": eval_context(cfg)})
    benches = {b: load_benchmark(b, cfg, data_dir) for b in names}  # fail fast
    frames = []
    for ck in cfg.eval.checkpoints:
        path = artifacts.named_checkpoint(cfg.run_dir, ck, len(cfg.stages))
        settings = {b: pair_settings(cfg, b, path) for b in benches}
        todo = [b for b in benches if not store.done(f"{ck}__{b}", settings[b])]
        if todo:  # a vLLM engine is shut down and its GPU memory freed before the next loads
            # no name may hold the (model, tokenizer): release_engine must drop the last reference
            with loaded_model(
                load_fn(cfg, path)
                if load_fn
                else load_policy(cfg, path, eval_rope(cfg), max_seq_length=eval_context(cfg))
            ) as m:
                lora = lora_request_for(m.model, path)
                for b in todo:
                    df, t = rollout(
                        m.model,
                        m.tokenizer,
                        benches[b],
                        **rollout_settings(settings[b]),
                        grader=grader,
                        sample_fn=sample_fn,
                        lora_request=lora,
                    )
                    df.insert(0, "benchmark", b)
                    df.insert(0, "checkpoint", ck)
                    t["prompt_tokens_max"] = longest_prompt(
                        m.tokenizer, benches[b], cfg.model.instruction_suffix
                    )
                    store.write(f"{ck}__{b}", df[RESPONSE_COLUMNS], settings[b], **t)
                    log(
                        f"{ck} / {b}: {len(df)} responses, accuracy {df['correct'].mean():.3f}, "
                        f"{t['sample_s']:.1f} s sampling + {t['grade_s']:.1f} s grading"
                    )
        frames += [store.read(f"{ck}__{b}") for b in benches]
    responses = pd.concat(frames, ignore_index=True)
    artifacts.write_parquet(out / "responses.parquet", responses)
    return responses


def longest_prompt(tokenizer, problems: pd.DataFrame, suffix: str) -> int | None:
    """Tokens of the longest chat-formatted prompt (for the protocol's context actually used)."""
    try:
        texts = prompt_texts(tokenizer, problems, suffix)
        return max(
            (len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts), default=0
        )
    except (TypeError, ValueError, KeyError, AttributeError):  # a test double without a tokenizer
        return None


def timings(out: str | Path) -> pd.DataFrame:
    """Per-pair sampling and grading seconds recorded by run_evaluation (throughput, grading)."""
    info = PartStore(Path(out) / PAIRS).info()
    if info.empty:
        return info
    names = info.pop("part").str.split("__", n=1, expand=True)
    return info.assign(checkpoint=names[0], benchmark=names[1])
