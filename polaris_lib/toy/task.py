"""The embedded toy world: a char-level Qwen3 that learns multi-step sums on a CPU in minutes.

Why it exists: the `tiny` preset must run the whole POLARIS recipe (probe, curation, GRPO stages,
YaRN, evaluation) on a CPU without downloading a model. So the kit builds its own "hub model":
- a character-level tokenizer (``tokenizers`` library, ``PreTrainedTokenizerFast``) with a
  Qwen3-style chat template and ``<think>``/``</think>``/``<|im_end|>`` as single special tokens;
- a tiny ``Qwen3ForCausalLM`` whose RoPE lives in ``rope_parameters`` (so YaRN applies as for Qwen3);
- a task: sums of ``k`` single digits (difficulty = k). The worked trace rewrites the expression,
  adding the first two numbers each step (``7+3+5+2`` -> ``10+5+2 15+2 17``), so each step only
  copies from the previous one (learnable by 2 layers) and trace length grows ~k^2;
- a warm start: a few hundred steps of supervised training on traces from a *sloppy teacher* who
  gets a step wrong with probability ``warmstart_noise`` (more often on a carry) and, on longer
  sums, often skips the work and guesses (``<think>~17</think>``, ``warmstart_shortcut``: never
  on 2 terms, 80% on 8). The policy learns both habits: sampling at T=1 makes step mistakes and
  guesses where working it out would pay, while greedy decoding is mostly right on easy items.
  That is the start RL acts on: sharpen the steps, and learn *when to reason* (a behaviour
  choice, as long chains of thought are in real models), which a 0.3M-parameter model learns
  in tens of GRPO steps. Without the guessing habit (toy-v4, step noise only) three stages of
  GRPO gained +4 points at best: benchmarks/results/toy_stages_v4*.json.
This module holds the task and the teacher; the tokenizer and model are in polaris_lib/toy/model.py,
the warm start, build stats, hash-keyed cache and shipped copy in polaris_lib/toy/build.py.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from polaris_lib.config.sections import ToyConfig

CODE_VERSION = "toy-v5"
"""Bump when this module or toy_build changes what is built (tokenizer, task, model, warm start)."""

IM_START, IM_END, THINK, THINK_END, PAD, UNK = (
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<|endoftext|>",
    "<unk>",
)
SPECIAL_TOKENS = [PAD, IM_START, IM_END, THINK, THINK_END, UNK]
SPLITS = {"train": 0, "test": 1, "probe": 2}
# Problems go to a split by a hash of their text, so the splits are disjoint by construction:
# 80% of all possible problems belong to the train pool, 10% to test, 10% to the probe set.
_SPLIT_BUCKETS = {"train": range(0, 8), "test": range(8, 9), "probe": range(9, 10)}


# ----------------------------------------------------------------------------- task
def _split_of(problem: str) -> str:
    bucket = int(hashlib.sha1(problem.encode()).hexdigest(), 16) % 10
    return next(s for s, r in _SPLIT_BUCKETS.items() if bucket in r)


def problem_text(terms: list[int], modulus: int) -> str:
    """'7+3+5+2 mod 10' (or '7+3+5+2' for plain sums)."""
    expr = "+".join(map(str, terms))
    return f"{expr} mod {modulus}" if modulus else expr


def parse_problem(problem: str) -> tuple[list[int], int]:
    """(terms, modulus) of a toy problem text; modulus 0 = plain sum."""
    expr, _, mod = problem.partition(" mod ")
    try:
        terms, modulus = [int(t) for t in expr.split("+")], int(mod or 0)
    except ValueError:
        raise ValueError(f"not a toy problem: {problem!r} (expected e.g. '7+3+5 mod 10')") from None
    if len(terms) < 2:
        raise ValueError(f"toy problem {problem!r} needs at least two terms")
    return terms, modulus


def trace_steps(terms: list[int], modulus: int = 0) -> list[str]:
    """Worked steps: replace the first two numbers by their sum (mod `modulus`), rewrite the rest.

    >>> trace_steps([7, 3, 5, 2])
    ['10+5+2', '15+2', '17']
    >>> trace_steps([7, 3, 5, 2], modulus=10)
    ['0+5+2', '5+2', '7']
    """
    nums, steps = list(terms), []
    while len(nums) > 1:
        s = nums[0] + nums[1]
        nums = [s % modulus if modulus else s, *nums[2:]]
        steps.append("+".join(map(str, nums)))
    return steps


def format_solution(steps: list[str]) -> str:
    """Assistant text for given steps: reasoning inside <think>, the last step boxed after it."""
    return f"{THINK}{' '.join(steps)}{THINK_END}\\boxed{{{steps[-1].split('+')[0]}}}"


def reference_solution(problem_row) -> str:
    """The correct worked trace for a problem row (or problem text).

    >>> reference_solution({"problem": "7+3+5+2 mod 10"})
    '<think>0+5+2 5+2 7</think>\\\\boxed{7}'
    """
    problem = problem_row if isinstance(problem_row, str) else problem_row["problem"]
    return format_solution(trace_steps(*parse_problem(problem)))


def make_problems(
    cfg: ToyConfig | None,
    split: str,
    n: int,
    seed: int = 0,
    min_terms: int | None = None,
    max_terms: int | None = None,
) -> pd.DataFrame:
    """n distinct toy problems of one split, in the kit's problem schema.

    The number of terms k (the `difficulty`) is drawn uniformly in [min_terms, max_terms]
    (defaults from `cfg`); digits are 1..cfg.max_value. Splits are disjoint (hash of the text);
    the same arguments always give the same table, and a smaller n gives a prefix of a larger one.
    `cfg` None is the default world, ToyConfig().
    """
    if split not in SPLITS:
        raise ValueError(f"toy split {split!r} unknown; choose one of {sorted(SPLITS)}")
    cfg = ToyConfig() if cfg is None else cfg
    lo = cfg.min_terms if min_terms is None else min_terms
    hi = cfg.max_terms if max_terms is None else max_terms
    if not 2 <= lo <= hi:
        raise ValueError(f"toy: need 2 <= min_terms <= max_terms, got {lo}..{hi}")
    rng = np.random.default_rng([cfg.seed, seed, SPLITS[split], lo, hi])
    rows, seen, tries = [], set(), 0
    while len(rows) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(
                f"toy: could not draw {n} distinct {split!r} problems with {lo}..{hi} terms "
                f"(got {len(rows)}); ask for fewer or allow more terms"
            )
        k = int(rng.integers(lo, hi + 1))
        terms = rng.integers(1, cfg.max_value + 1, size=k).tolist()
        problem = problem_text(terms, cfg.modulus)
        if problem in seen or _split_of(problem) != split:
            continue
        seen.add(problem)
        total = sum(terms) % cfg.modulus if cfg.modulus else sum(terms)
        rows.append(
            dict(
                problem_id=f"toy/{split}/{problem.split(' ')[0]}",
                problem=problem,
                answer=str(total),
                source="toy",
                difficulty=k,
                trace_len=len(reference_solution(problem)),
            )
        )
    cols = ["problem_id", "problem", "answer", "source", "difficulty", "trace_len"]
    return pd.DataFrame(rows, columns=cols)


def sloppy_solution(terms: list[int], rng: np.random.Generator, noise: float, modulus: int = 0):
    """A teacher's trace that errs at each step with prob `noise` (x2 on a carry) and carries on.

    A carry is a step whose sum reaches the modulus (or, for plain sums, carries a ten). The error
    (off by one) propagates consistently to the boxed answer, so the trace is wrong but well
    formed: the warm-started policy learns a calibrated per-step error rate.
    """
    nums, steps = list(terms), []
    while len(nums) > 1:
        a, b = nums[0], nums[1]
        s = a + b
        carry = s >= modulus if modulus else (a % 10) + (b % 10) >= 10
        if rng.random() < noise * (2.0 if carry else 1.0):
            s = max(0, s + int(rng.choice([-1, 1])))
        nums = [s % modulus if modulus else s, *nums[2:]]
        steps.append("+".join(map(str, nums)))
    return format_solution(steps)


GUESS = "~"
"""First thinking character of a guessed answer (`<think>~17</think>\\boxed{17}`)."""


def guess_solution(
    terms: list[int],
    rng: np.random.Generator,
    accuracy: float,
    modulus: int = 0,
    miss: str = "near",
    max_value: int | None = None,
):
    """A teacher's shortcut: no worked steps, a guessed total (`<think>~N</think>\\boxed{N}`).

    The guess is right with probability `accuracy` - 0.1 per term beyond two (at least 0.05), so
    guessing is fine on easy items and a bad bet on hard ones. A wrong guess is off by 1 to 3
    (`miss` "near"), or any other total the terms could sum to, uniformly ("uninformative":
    k terms of 1..max_value sum to k..k*max_value, or 0..modulus-1).
    """
    total = sum(terms) % modulus if modulus else sum(terms)
    if rng.random() >= max(0.05, accuracy - 0.1 * (len(terms) - 2)):
        if miss == "uninformative":
            k, top = len(terms), max_value or max(terms)
            lo, hi = (0, modulus - 1) if modulus else (k, k * top)
            others = [v for v in range(lo, hi + 1) if v != total]
            total = int(rng.choice(others)) if others else total
        else:
            total = max(0, total + int(rng.choice([-3, -2, -1, 1, 2, 3])))
            total = total % modulus if modulus else total
    return f"{THINK}{GUESS}{total}{THINK_END}\\boxed{{{total}}}"


def teacher_solution(terms: list[int], rng: np.random.Generator, cfg: ToyConfig) -> str:
    """One warm-start target: a guess (more often the more terms), else a sloppy worked trace."""
    span = max(1, cfg.max_terms - cfg.min_terms)
    p_guess = cfg.warmstart_shortcut * min(1.0, max(0.0, (len(terms) - cfg.min_terms) / span))
    if p_guess and rng.random() < p_guess:
        return guess_solution(
            terms, rng, cfg.shortcut_accuracy, cfg.modulus, cfg.guess_miss, cfg.max_value
        )
    return sloppy_solution(terms, rng, cfg.warmstart_noise, cfg.modulus)
