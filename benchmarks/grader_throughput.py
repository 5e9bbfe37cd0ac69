"""Grader throughput: polaris_lib.rewards.Grader vs the naive `verify(parse(gold), parse(response))` loop.

Same machine, same run, 8 synthetic responses per problem over the local benchmark files:
3 correct in the gold's own form, 2 equivalent in another form, 2 wrong, 1 unboxed. Writes
benchmarks/results/grader_throughput.json.

    .venv/bin/python benchmarks/grader_throughput.py [--per-file 60]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from polaris_lib.rewards import Grader, normalize_gold

DATA = Path(os.environ.get("POLARIS_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
OUT = Path(__file__).parent / "results" / "grader_throughput.json"
FILES = ["aime24", "aime25", "amc23", "minerva", "olympiad"]
THINK = "<think>Let me work through it step by step.</think> "


def other_form(g: str) -> str:
    """The same value written differently (forces math-verify, defeats the exact-match short-circuit)."""
    if re.fullmatch(r"-?\d+", g):
        return f"\\frac{{{2 * int(g)}}}{{2}}"
    if re.fullmatch(r"-?\d+\.\d+", g):
        return f"{g}0"
    return f"x = {g}"


def wrong_form(g: str, j: int) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", g):
        return str(float(g) + j + 1).removesuffix(".0")
    return f"{g} + {j + 1}"


def build(per_file: int) -> tuple[list[str], list, list[str], list[str]]:
    """responses, golds (as stored), naive gold strings, and the kind of each response."""
    responses, golds, naive_golds, kinds = [], [], [], []
    for name in FILES:
        df = pd.read_parquet(DATA / "benchmarks" / f"{name}.parquet").head(per_file)
        for gold in (r["ground_truth"] for r in df["reward_model"]):
            form = normalize_gold(gold)[0]
            raw = (
                gold if isinstance(gold, str) else str(gold if isinstance(gold, float) else gold[0])
            )
            rows = [("correct", f"The answer is \\boxed{{{form}}}.")] * 3
            rows += [("equivalent", f"So \\boxed{{{other_form(form)}}}")] * 2
            rows += [
                ("wrong", f"The answer is \\boxed{{{wrong_form(form, j)}}}.") for j in range(2)
            ]
            rows += [("unboxed", f"The answer is ${form}$.")]
            for kind, text in rows:
                responses.append(THINK + text)
                golds.append(gold)
                naive_golds.append(raw)
                kinds.append(kind)
    return responses, golds, naive_golds, kinds


NOTE = (
    "naive_raw_gold is the literal loop verify(parse(gold), parse(response)). On a bare gold string "
    "(no $ or \\boxed) parse() falls back to the plain-expression extractor, which keeps only the "
    "first number of LaTeX such as '8.7 \\times 10^{8}', so that loop is fast on such golds but "
    "marks correct answers wrong. naive_dollar_gold wraps the gold in $...$ so it is parsed as "
    "LaTeX (the fair baseline, same parsing work as the grader's). Both naive loops credit "
    "unboxed answers (unboxed_credited), which the recipe's reward must not; those are not counted "
    "as disagreements because the grader decides them by format, not by math-verify. Where the "
    "grader is faster: it skips math-verify for unboxed answers, answers equal to a gold form as "
    "normalised strings, and integer-vs-integer answers (AIME/AMC golds), and verifies each "
    "distinct (gold, answer) once, in 2 worker processes. math-verify's own lru_cache already "
    "spares the naive loop repeated parses of one gold, so the gain elsewhere is parallelism, "
    "which a loaded machine (see load avg) does not give."
)


def naive(responses: list[str], gold_strings: list[str]) -> tuple[list[int], float]:
    """The obvious loop: parse both sides for every pair, math-verify in the main thread."""
    from math_verify import parse, verify

    t0 = time.perf_counter()
    out = [int(verify(parse(g), parse(r))) for r, g in zip(responses, gold_strings, strict=True)]
    return out, time.perf_counter() - t0


def compare(cold, scores: list[int], kinds: list[str], responses, golds) -> dict:
    """Verdict agreement where the grader decided by math-verify (correct/wrong)."""
    both = [i for i, r in enumerate(cold) if r.reason in ("correct", "wrong")]
    dis = [i for i in both if cold[i].score != scores[i]]
    return {
        "compared_where_both_apply": len(both),
        "disagreements": len(dis),
        "disagreements_by_kind": dict(Counter(kinds[i] for i in dis)),
        "examples": [
            {"gold": golds[i], "response": responses[i][len(THINK) :], "grader": cold[i].score}
            for i in dis[:4]
        ],
        "unboxed_credited": sum(scores[i] for i in range(len(kinds)) if kinds[i] == "unboxed"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-file", type=int, default=25, help="problems taken from each file")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    responses, golds, naive_golds, kinds = build(args.per_file)
    load0 = round(os.getloadavg()[0], 1)
    n = len(responses)

    grader = Grader()
    t0 = time.perf_counter()
    cold = grader.grade_batch_results(responses, golds)  # includes starting the worker pool
    t_cold = time.perf_counter() - t0
    grader2 = Grader().warm_up()  # fresh caches, workers started: the steady state in training
    t0 = time.perf_counter()
    warm = grader2.grade_batch_results(responses, golds)
    t_warm = time.perf_counter() - t0
    grader.close()
    grader2.close()
    raw_scores, t_raw = naive(responses, naive_golds)
    delim = [f"${g.strip()}$" for g in naive_golds]
    delim_scores, t_delim = naive(responses, delim)

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_avg_start_end": [load0, round(os.getloadavg()[0], 1)],
        "processes": grader.pool.processes,
        "problems": n // 8,
        "samples": n,
        "samples_per_s": {
            "naive_raw_gold": round(n / t_raw, 1),
            "naive_dollar_gold": round(n / t_delim, 1),
            "grader_cold": round(n / t_cold, 1),
            "grader_warm_pool": round(n / t_warm, 1),
        },
        "ratio_vs_naive_raw": {"cold": round(t_raw / t_cold, 2), "warm": round(t_raw / t_warm, 2)},
        "ratio_vs_naive_dollar": {
            "cold": round(t_delim / t_cold, 2),
            "warm": round(t_delim / t_warm, 2),
        },
        "seconds": {
            "naive_raw_gold": round(t_raw, 2),
            "naive_dollar_gold": round(t_delim, 2),
            "grader_cold": round(t_cold, 2),
            "grader_warm_pool": round(t_warm, 2),
        },
        "grader_reasons": dict(Counter(r.reason for r in cold)),
        "cold_vs_warm_identical": [r.score for r in cold] == [r.score for r in warm],
        "vs_naive_raw_gold": compare(cold, raw_scores, kinds, responses, naive_golds),
        "vs_naive_dollar_gold": compare(cold, delim_scores, kinds, responses, delim),
        "unboxed_samples": kinds.count("unboxed"),
        "note": NOTE,
        "accuracy_by_kind_grader": {
            k: round(sum(cold[i].score or 0 for i in range(n) if kinds[i] == k) / kinds.count(k), 3)
            for k in sorted(set(kinds))
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, OUT)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
