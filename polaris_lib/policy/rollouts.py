"""The one sample-then-grade loop (RECIPE.md §7-8): every step that scores the policy uses it.

The probe (per temperature), curation (per chunk of the pool), notebook 03's held-out check,
the extrapolation experiment (per RoPE variant and length) and the evaluation (per checkpoint and
benchmark) all call `rollout`: n samples per problem through polaris_lib.policy.sampling, then
graded against each problem's gold forms by polaris_lib.grading. The result is a responses table
(`RESPONSE_COLUMNS` without the caller's own keys) that can be regraded later without resampling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from polaris_lib.grading.grader import default_grader
from polaris_lib.policy.sampling import sample

RESPONSE_COLUMNS = [
    "checkpoint",
    "benchmark",
    "problem_id",
    "sample_idx",
    "text",
    "n_tokens",
    "finished",
    "truncated",
    "answers",
    "correct",
    "reason",
]
"""An evaluation's responses table: one row per sampled response; `answers` (gold forms) makes it
regradable. The first two columns are the evaluation's keys; `rollout` returns the rest."""


def gold_forms(row) -> list[str]:
    """A problem's accepted answers: its `answers` list, else its single `answer`."""
    forms = row.get("answers")
    if forms is None or (isinstance(forms, float) and np.isnan(forms)):
        return [row["answer"]]
    return list(forms)


def grade_samples(samples: pd.DataFrame, problems: pd.DataFrame, grader=None, thinking=True):
    """Attach each problem's gold forms and grade: adds `answers`, `correct` (1/0/NaN), `reason`."""
    golds = {r["problem_id"]: gold_forms(r) for r in problems.to_dict("records")}
    unknown = sorted(set(samples["problem_id"]) - set(golds))
    if unknown:
        raise KeyError(f"samples for problems without a gold answer: {unknown[:5]}")
    out = samples.copy()
    out["answers"] = [golds[p] for p in out["problem_id"]]
    return regrade(out, grader=grader, thinking=thinking)


def regrade(responses: pd.DataFrame, grader=None, thinking: bool = True) -> pd.DataFrame:
    """Re-score a responses table from its `text` and `answers` (no resampling); returns a copy."""
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


def rollout(
    model,
    tokenizer,
    problems: pd.DataFrame,
    *,
    n: int,
    temperature: float,
    top_p: float,
    top_k: int,
    max_new_tokens: int,
    seed: int,
    suffix: str,
    thinking: bool,
    grader=None,
    sample_fn: Callable | None = None,
    lora_request=None,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """Sample n responses per problem and grade them; returns (responses, timing dict).

    `sample_fn` replaces polaris_lib.policy.sampling.sample (same signature); `lora_request` is
    passed on only when set (without it, `sample` uses the adapter `load_policy` attached to a
    vLLM engine loaded from a LoRA checkpoint).
    """
    extra = {"lora_request": lora_request} if lora_request is not None else {}
    t0 = time.perf_counter()
    samples = (sample_fn or sample)(
        model,
        tokenizer,
        problems,
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        seed=seed,
        suffix=suffix,
        batch_size=batch_size,
        progress=progress,
        **extra,
    )
    t1 = time.perf_counter()
    graded = grade_samples(samples, problems, grader, thinking)
    t2 = time.perf_counter()
    timing = dict(
        sample_s=t1 - t0,
        grade_s=t2 - t1,
        responses=len(graded),
        tokens=int(graded["n_tokens"].sum()),
    )
    return graded, timing
