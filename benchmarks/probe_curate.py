"""Wall time and samples/s of the temperature probe and of curation on the tiny preset.

Runs the library path the notebooks use (probe.run_probe, curate.run_curation) at the tiny
preset's sizes in a temporary run folder, and, on the same problems, the obvious alternative:
one problem's n samples per generate call (batch = n) instead of batches of 64 rows.
Also records what the runs produced (the probe curve, the chosen temperature, the histogram),
since those are the issue's quality bar.

    .venv/bin/python benchmarks/probe_curate.py            # full tiny sizes
    .venv/bin/python benchmarks/probe_curate.py --quick    # reduced sizes (smoke)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from polaris_lib import curate, probe
from polaris_lib.artifacts import write_json
from polaris_lib.config import apply_overrides, get_preset
from polaris_lib.grading import default_grader
from polaris_lib.policy import grade_samples, load_policy, sample

OUT = Path(__file__).resolve().parent / "results" / "probe_curate.json"


def _alternative(model, tok, problems, n, temperature, max_new_tokens, grader) -> float:
    """Samples/s of per-problem generate calls (batch = n), sampling + grading, as the library."""
    t0 = time.perf_counter()
    for i in range(len(problems)):
        one = problems.iloc[i : i + 1]
        s = sample(
            model,
            tok,
            one,
            n=n,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=n,
            progress=False,
        )
        grade_samples(s, one, grader)
    return len(problems) * n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="reduced sizes (a smoke run)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    over = {}
    if args.quick:
        over = {"probe.n_problems": 8, "probe.n_samples": 4, "curation.max_problems": 32}
    with tempfile.TemporaryDirectory() as run_dir:
        run = apply_overrides(get_preset("tiny"), {**over, "run_dir": run_dir})
        model, tok = load_policy(run)
        grader = default_grader(thinking=run.model.thinking)
        grader.grade("<think>.</think>\\boxed{1}", "1")  # start the grading workers off the clock

        problems = probe.probe_problems(run)
        out = Path(run_dir) / "probe"
        t0 = time.perf_counter()
        samples = probe.run_probe(model, tok, run, out, problems, grader=grader, progress=False)
        probe_s = time.perf_counter() - t0
        table = probe.per_temperature(samples, seed=run.seed)
        decision = probe.choose_temperature(table, run.probe, samples=samples, seed=run.seed)
        t0 = time.perf_counter()
        probe.run_probe(model, tok, run, out, problems, grader=grader, progress=False)
        resume_s = time.perf_counter() - t0  # every temperature already on disk

        temperature = decision["probe/chosen_temperature"]
        pool = curate.pool_problems(run)
        t0 = time.perf_counter()
        rates = curate.run_curation(
            model,
            tok,
            run,
            Path(run_dir) / "curate",
            pool,
            temperature,
            grader=grader,
            progress=False,
        )
        cur_s = time.perf_counter() - t0
        buckets = curate.bucket_table(rates, run.curation.samples_per_problem)
        sub = pool.head(16 if args.quick else 32)
        alt_sps = _alternative(
            model,
            tok,
            sub,
            run.curation.samples_per_problem,
            temperature,
            run.curation.max_new_tokens,
            grader,
        )

    n_probe, n_cur = len(samples), len(rates) * run.curation.samples_per_problem
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": args.threads,
        # Other jobs share the 2 cores: samples/s scale with what they leave (1-min load average).
        "load_average_1min": round(os.getloadavg()[0], 2),
        "quick": args.quick,
        "probe": {
            "grid": run.probe.temperatures,
            "problems": len(problems),
            "samples": n_probe,
            "wall_s": round(probe_s, 2),
            "samples_per_s": round(n_probe / probe_s, 1),
            "resume_wall_s": round(resume_s, 3),
            "curve": table[
                [
                    "temperature",
                    "accuracy",
                    "acc_lo",
                    "acc_hi",
                    "distinct4",
                    "truncation_rate",
                    "zone",
                ]
            ]
            .round(4)
            .to_dict("records"),
            "chosen_temperature": temperature,
            "reason": decision["probe/reason"],
        },
        "curation": {
            "problems": len(rates),
            "samples": n_cur,
            "temperature": temperature,
            "wall_s": round(cur_s, 2),
            "samples_per_s": round(n_cur / cur_s, 1),
            "alternative_batch_n_samples_per_s": round(alt_sps, 1),
            "speedup_vs_batch_n": round((n_cur / cur_s) / alt_sps, 2),
            "histogram": dict(
                zip(buckets.bucket, buckets.problems.astype(int).tolist(), strict=True)
            ),
            "kept": int(buckets.kept.sum()),
            "dropped_solved_all": int(buckets.dropped.sum()),
        },
    }
    write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
