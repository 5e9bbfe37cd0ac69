"""Evaluation throughput on the tiny preset: samples/s, tokens/s, and the grading share of the time.

Runs `evaluate.run_evaluation` on the toy benchmark (base policy, the preset's sampling settings)
and reads its recorded sampling and grading seconds. In the same run, against the obvious
alternatives: sampling one prompt at a time (batch_size=1) on a subset, grading one response per
call (`Grader.grade`) instead of one batch (`grade_batch`), and grading with every answer sent
through math-verify (no exact-match short-circuit), the cost on LaTeX-answer benchmarks. Writes
benchmarks/results/eval_throughput.json.

    .venv/bin/python benchmarks/eval_throughput.py [--problems 64] [--k 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from polaris_lib import evaluate
from polaris_lib.artifacts import write_json
from polaris_lib.config import apply_overrides, get_preset
from polaris_lib.grading import Grader
from polaris_lib.policy import load_policy, sample

OUT = Path(__file__).parent / "results" / "eval_throughput.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=64, help="toy test problems")
    ap.add_argument("--k", type=int, default=8, help="samples per problem")
    ap.add_argument("--single", type=int, default=8, help="problems for the batch_size=1 run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="eval_bench_"))
    cfg = apply_overrides(
        get_preset("tiny"),
        {
            "run_dir": str(tmp),
            "eval.benchmarks": ["toy"],
            "eval.checkpoints": ["base"],
            "eval.max_problems": args.problems,
            "eval.samples": {"toy": args.k},
        },
    )
    grader = Grader(thinking=cfg.model.thinking)
    grader.grade_batch(["<think></think>\\boxed{1}"], ["1"])  # start the worker pool first
    model, tok = load_policy(cfg)
    t0 = time.perf_counter()
    responses = evaluate.run_evaluation(
        cfg, tmp / "05", load_fn=lambda c, p: (model, tok), grader=grader, log=lambda s: None
    )
    wall = time.perf_counter() - t0
    t = evaluate.timings(tmp / "05").iloc[0]

    # Alternative 1: the same settings, one prompt per generate call, on a subset.
    problems = evaluate.load_benchmark("toy", cfg).head(args.single)
    s = evaluate.pair_settings(cfg, "toy", None)
    t1 = time.perf_counter()
    single = sample(
        model,
        tok,
        problems,
        n=args.k,
        temperature=s["temperature"],
        top_p=s["top_p"],
        top_k=s["top_k"],
        max_new_tokens=s["max_new_tokens"],
        seed=s["seed"],
        suffix=s["suffix"],
        batch_size=1,
        progress=False,
    )
    single_s = time.perf_counter() - t1

    # Alternative 2: grade one response per call instead of one batch.
    texts, golds = responses["text"].tolist(), [list(a) for a in responses["answers"]]
    t2 = time.perf_counter()
    grader.grade_batch(texts, golds)
    batch_grade_s = time.perf_counter() - t2
    t3 = time.perf_counter()
    for x, g in zip(texts, golds, strict=True):
        grader.grade(x, g)
    one_by_one_s = time.perf_counter() - t3
    grader.close()
    # Without the exact-match short-circuit every boxed answer goes through math-verify: the cost a
    # benchmark with LaTeX answers (AIME, MATH) pays per response.
    slow = Grader(thinking=cfg.model.thinking, short_circuit=False)
    slow.grade_batch(["<think></think>\\boxed{1}"], ["1"])
    t4 = time.perf_counter()
    slow.grade_batch(texts, golds)
    mv_grade_s = time.perf_counter() - t4
    slow.close()

    batched_rate = t["responses"] / t["sample_s"]
    single_rate = len(single) / single_s
    result = dict(
        preset="tiny",
        model="toy (base policy)",
        benchmark="toy",
        problems=args.problems,
        k=args.k,
        responses=int(t["responses"]),
        tokens=int(t["tokens"]),
        max_new_tokens=cfg.eval.max_new_tokens,
        temperature=cfg.eval.temperature,
        torch_threads=args.threads,
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        load_average=os.getloadavg()[0],
        sample_s=round(t["sample_s"], 3),
        grade_s=round(t["grade_s"], 3),
        wall_s=round(wall, 3),
        samples_per_s=round(batched_rate, 2),
        tokens_per_s=round(t["tokens"] / t["sample_s"], 1),
        end_to_end_samples_per_s=round(t["responses"] / (t["sample_s"] + t["grade_s"]), 2),
        grading_share=round(t["grade_s"] / (t["sample_s"] + t["grade_s"]), 4),
        accuracy=round(float(responses["correct"].mean()), 4),
        single_prompt_samples_per_s=round(single_rate, 2),
        batched_vs_single_prompt=round(batched_rate / single_rate, 2),
        grade_batch_s=round(batch_grade_s, 3),
        grade_one_by_one_s=round(one_by_one_s, 3),
        batch_vs_one_by_one_grading=round(one_by_one_s / batch_grade_s, 2),
        grade_all_math_verify_s=round(mv_grade_s, 3),
        grading_share_all_math_verify=round(mv_grade_s / (t["sample_s"] + mv_grade_s), 4),
        note="the machine is shared by several processes; timings vary ~15% or more run to run",
    )
    write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
