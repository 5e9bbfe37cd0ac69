"""Evaluation the way POLARIS reports it (RECIPE.md §7): sample, grade, keep every response.

Flow: resolve checkpoints (``base``, ``stage1``..``stageN``, ``final`` = the last stage) -> load
each catalog benchmark -> sample k responses per problem with the preset's settings
(`sampling.sample`: vLLM on a GPU, batched transformers on a CPU) -> grade with the kit's grader
-> one parquet per (checkpoint, benchmark) pair under ``<step>/pairs/`` -> ``responses.parquet``.
A re-run skips pairs already finished with the same settings (the pair store lives in
`polaris_lib.artifacts.resume`); `regrade` re-scores a responses table without sampling again. The
summary tables live in `polaris_lib.evaluate.tables`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib.artifacts import files as artifacts
from polaris_lib.artifacts.resume import pair_done, read_pair, write_pair
from polaris_lib.config.sections import RunConfig, YarnConfig
from polaris_lib.policy.sampling import loaded_model

TOY_EVAL_PROBLEMS = 128
"""Toy test-split problems evaluated when eval.max_problems is 0 (the toy set has no fixed size)."""


# ----------------------------------------------------------------------------- what to evaluate
def checkpoint_path(run_dir: str | Path, name: str, n_stages: int) -> str | None:
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
    path = artifacts.checkpoint_dir(run_dir, k) / "final"
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise FileNotFoundError(
            f"checkpoint {name!r} needs {path}, which holds no model: run 03_grpo_stage with "
            f"STAGE={k} first, or drop {name!r} from eval.checkpoints"
        )
    return str(path)


def load_benchmark(name: str, cfg: RunConfig, data_dir: str | Path | None = None) -> pd.DataFrame:
    """A catalog benchmark in the data schema; the toy task draws its held-out test split."""
    from polaris_lib.data import catalog_entry, load_dataset

    limit = cfg.eval.max_problems or None
    if catalog_entry(name).generator:
        n = limit or TOY_EVAL_PROBLEMS
        return load_dataset(name, split="test", toy_cfg=cfg.toy, n=n, seed=cfg.seed)
    return load_dataset(name, data_dir=data_dir, limit=limit)


def harness_only(cfg: RunConfig, benchmark: str) -> bool:
    """True when a score cannot mean anything: the toy model on a real (language) benchmark."""
    return cfg.model.name_or_path == "toy" and benchmark != "toy"


def pair_settings(cfg: RunConfig, benchmark: str, checkpoint: str | None) -> dict:
    """Everything that determines a pair's responses (a pair done with other settings is redone)."""
    ev = cfg.eval
    return dict(
        model=cfg.model.name_or_path,
        checkpoint_path=checkpoint,
        weights=model_stamp(cfg, checkpoint),
        k=ev.k_for(benchmark),
        max_problems=ev.max_problems,
        temperature=ev.temperature,
        top_p=ev.top_p,
        top_k=ev.top_k,
        max_new_tokens=ev.max_new_tokens,
        seed=cfg.seed,
        suffix=cfg.model.instruction_suffix,
        thinking=cfg.model.thinking,
    )


def model_stamp(cfg: RunConfig, checkpoint: str | None) -> str | None:
    """What identifies the weights: a checkpoint's newest file time (a retrained stage redoes its
    pairs), the toy world's content hash for the toy base model, else None (a hub id)."""
    if checkpoint is not None and Path(checkpoint).is_dir():
        return str(max(p.stat().st_mtime_ns for p in Path(checkpoint).iterdir()))
    if checkpoint is None and cfg.model.name_or_path == "toy":
        from polaris_lib.toy.build import config_hash

        return config_hash(cfg.toy)
    return None


def plan(cfg: RunConfig, data_dir: str | Path | None = None) -> pd.DataFrame:
    """The (checkpoint, benchmark) pairs this config evaluates, with k and problem counts."""
    sizes = {b: len(load_benchmark(b, cfg, data_dir)) for b in cfg.eval.benchmarks}
    rows = []
    for ck in cfg.eval.checkpoints:
        path = checkpoint_path(cfg.run_dir, ck, len(cfg.stages))
        for b, n in sizes.items():
            k = cfg.eval.k_for(b)
            rows.append(dict(checkpoint=ck, path=path or cfg.model.name_or_path, benchmark=b,
                             problems=n, k=k, responses=n * k,
                             harness_only=harness_only(cfg, b)))  # fmt: skip
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- grading
def _gold_forms(row) -> list[str]:
    forms = row.get("answers")
    if forms is None or (isinstance(forms, float) and np.isnan(forms)):
        return [row["answer"]]
    return list(forms)


def grade_samples(samples: pd.DataFrame, problems: pd.DataFrame, grader=None, thinking=True):
    """Attach each problem's gold forms and grade: adds `answers`, `correct` (1/0/NaN), `reason`."""
    golds = {r["problem_id"]: _gold_forms(r) for r in problems.to_dict("records")}
    unknown = sorted(set(samples["problem_id"]) - set(golds))
    if unknown:
        raise KeyError(f"samples for problems not in the benchmark: {unknown[:5]}")
    out = samples.copy()
    out["answers"] = [golds[p] for p in out["problem_id"]]
    return regrade(out, grader=grader, thinking=thinking)


def regrade(responses: pd.DataFrame, grader=None, thinking: bool = True) -> pd.DataFrame:
    """Re-score a responses table from its `text` and `answers` (no resampling); returns a copy."""
    from polaris_lib.grading.grader import default_grader

    missing = {"text", "answers"} - set(responses.columns)
    if missing:
        raise KeyError(f"regrade needs columns {sorted(missing)}; has {list(responses.columns)}")
    g = grader or default_grader(thinking)
    results = g.grade_batch_results(
        responses["text"].fillna("").tolist(), [list(a) for a in responses["answers"]]
    )
    out = responses.copy()
    out["correct"] = np.array([np.nan if r.score is None else r.score for r in results], float)
    out["reason"] = [r.reason for r in results]
    return out


# ----------------------------------------------------------------------------- running
def load_for_eval(cfg: RunConfig, checkpoint: str | None, yarn: YarnConfig | None = None):
    """(model, tokenizer) to sample from: a vllm.LLM when the preset samples with vLLM on plain
    transformers weights, else the kit's loader (Unsloth fast_inference or transformers)."""
    if cfg.model.use_vllm and cfg.model.backend == "transformers":
        return _load_vllm(cfg, checkpoint, yarn)
    from polaris_lib.policy.load import load_policy

    return load_policy(cfg.model, toy_cfg=cfg.toy, checkpoint=checkpoint, yarn=yarn)


def model_path(cfg: RunConfig, checkpoint: str | None) -> str:
    """Folder (or hub id) the weights load from; the toy base model is the built toy world."""
    if checkpoint:
        return checkpoint
    if cfg.model.name_or_path == "toy":
        from polaris_lib.toy.build import build_toy_world

        return str(build_toy_world(cfg.toy))
    return cfg.model.name_or_path


def _load_vllm(cfg: RunConfig, checkpoint: str | None, yarn: YarnConfig | None):
    """vLLM offline engine; YaRN goes in through hf_overrides and the extended max_model_len
    (RECIPE.md §6); without it vLLM uses the model's own context."""
    from vllm import LLM

    path = model_path(cfg, checkpoint)
    kwargs = dict(model=path, dtype=cfg.model.dtype, seed=cfg.seed,
                  gpu_memory_utilization=cfg.model.gpu_memory_utilization)  # fmt: skip
    if yarn is not None and yarn.enabled:
        from transformers import AutoConfig

        from polaris_lib.policy.rope import vllm_yarn_kwargs

        kwargs.update(vllm_yarn_kwargs(AutoConfig.from_pretrained(path), yarn))
    llm = LLM(**kwargs)
    return llm, llm.get_tokenizer()


def lora_request_for(model, checkpoint: str | None):
    """The LoRA request an Unsloth fast_inference model needs to sample a LoRA checkpoint (its
    vLLM engine holds the base weights only), else None."""
    if checkpoint and (Path(checkpoint) / "adapter_config.json").exists():
        if hasattr(model, "load_lora"):
            return model.load_lora(checkpoint)
    return None


def evaluate_pair(
    model, tokenizer, problems, settings: dict, *, grader=None, sample_fn=None, lora_request=None
):
    """Sample k responses per problem and grade them; returns (responses, timing dict)."""
    from polaris_lib.policy.sampling import sample

    extra = {"lora_request": lora_request} if lora_request is not None else {}
    t0 = time.perf_counter()
    samples = (sample_fn or sample)(
        model,
        tokenizer,
        problems,
        n=settings["k"],
        temperature=settings["temperature"],
        top_p=settings["top_p"],
        top_k=settings["top_k"],
        max_new_tokens=settings["max_new_tokens"],
        seed=settings["seed"],
        suffix=settings["suffix"],
        progress=False,
        **extra,
    )
    t1 = time.perf_counter()
    graded = grade_samples(samples, problems, grader, settings["thinking"])
    t2 = time.perf_counter()
    timing = dict(sample_s=t1 - t0, grade_s=t2 - t1, responses=len(graded),
                  tokens=int(graded["n_tokens"].sum()))  # fmt: skip
    return graded, timing


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
    finished is not even loaded. Returns the combined table (also `<out>/responses.parquet`).
    """
    out = Path(out)
    benches = {b: load_benchmark(b, cfg, data_dir) for b in cfg.eval.benchmarks}  # fail fast
    frames = []
    for ck in cfg.eval.checkpoints:
        path = checkpoint_path(cfg.run_dir, ck, len(cfg.stages))
        settings = {b: pair_settings(cfg, b, path) for b in benches}
        todo = [b for b in benches if not pair_done(out, ck, b, settings[b])]
        if todo:  # a vLLM engine is shut down and its GPU memory freed before the next loads
            with loaded_model((load_fn or load_for_eval)(cfg, path)) as m:
                lora = lora_request_for(m.model, path)
                for b in todo:
                    df, timing = evaluate_pair(m.model, m.tokenizer, benches[b], settings[b],
                                               grader=grader, sample_fn=sample_fn,
                                               lora_request=lora)  # fmt: skip
                    df.insert(0, "benchmark", b)
                    df.insert(0, "checkpoint", ck)
                    write_pair(out, ck, b, df, settings[b], timing)
                    acc, t = df["correct"].mean(), timing
                    log(f"{ck} / {b}: {len(df)} responses, accuracy {acc:.3f}, {t['sample_s']:.1f}"
                        f" s sampling + {t['grade_s']:.1f} s grading")  # fmt: skip
        frames += [read_pair(out, ck, b) for b in benches]
    responses = pd.concat(frames, ignore_index=True)
    artifacts.write_parquet(out / "responses.parquet", responses)
    return responses
