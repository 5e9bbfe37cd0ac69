"""The toy result of the stage schedule: three POLARIS stages on the tiny preset, timed, with the
held-out accuracy after each stage against the warm start (95% bootstrap intervals, paired gain).

Runs the same library calls as notebook 03 (polaris_lib.training), stage after stage, in
a throwaway run folder. Without notebooks 01/02 in front of it: the stage temperatures are given
(--temperature, default 1.0 = the eval temperature) and stage 1 trains on the preset's curation
pool with no pass-rate filter (the toy warm start solves few problems 8/8, so 02 drops little).
Writes benchmarks/results/toy_stages.json.

    .venv/bin/python benchmarks/toy_stages.py [--threads 2] [--lr 1e-4] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from polaris_lib import artifacts, training
from polaris_lib.artifacts import write_json
from polaris_lib.config import parse_value
from polaris_lib.config.overrides import resolve
from polaris_lib.toy import make_problems

OUT = Path(__file__).parent / "results" / "toy_stages.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=1.0, help="rollout T of every stage")
    ap.add_argument("--lr", type=float, default=None, help="override every stage's learning rate")
    ap.add_argument("--steps", type=int, default=None, help="override every stage's max_steps")
    ap.add_argument("--stages", type=int, default=None, help="run only the first N stages")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any preset override, e.g. stages.*.max_completion_length=96 (repeatable; VALUE as for polaris run -p)",
    )
    ap.add_argument("--run-dir", default=None, help="keep the run folder here (default: tmp)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    run_dir = args.run_dir or tempfile.mkdtemp(prefix="toy_stages_")
    over = {"stages.*.temperature": args.temperature}
    if args.lr is not None:
        over["stages.*.learning_rate"] = args.lr
    if args.steps is not None:
        over["stages.*.max_steps"] = args.steps
    for item in args.set:
        key, _, value = item.partition("=")
        over[key] = parse_value(value)  # as `polaris run -p`
    cfg = resolve("tiny", over, section="stages", RUN_DIR=run_dir)
    pool = make_problems(cfg.toy, "train", cfg.curation.max_problems, seed=cfg.seed)
    cur = artifacts.step_dir(run_dir, artifacts.CURATE)
    artifacts.write_parquet(cur / "curated.parquet", pool.assign(pass_rate=float("nan")))
    held = training.heldout_problems(cfg)
    t0 = time.perf_counter()
    warm = training.warmstart_scores(cfg, held)
    timings = {"heldout_eval_warmstart": round(time.perf_counter() - t0, 1)}
    stages = []
    for k in range(1, (args.stages or len(cfg.stages)) + 1):
        out = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, k)
        plan = training.plan_stage(cfg, k)
        data = training.load_stage_data(cfg, k)
        t0 = time.perf_counter()
        summary = training.train_stage(cfg, plan, out, data)
        t_train = time.perf_counter() - t0
        steps = artifacts.read_parquet(out / "steps.parquet")
        kept, dropped = training.drop_easy(cfg, k, out, data)
        t0 = time.perf_counter()
        after = training.heldout_scores(cfg, str(plan.final_dir), held)
        t_eval = time.perf_counter() - t0
        cmp = training.compare_heldout(cfg, warm, after)
        sizes = training.dataset_sizes(cfg, k)
        m = training.stage_metrics(plan, summary, steps, sizes, cmp)
        stages.append(
            {key.removeprefix("train/"): v for key, v in m.items()}
            | dict(
                stage=k,
                train_seconds=round(t_train, 1),
                reused_final=summary.get("reused_final", False),
                heldout_eval_seconds=round(t_eval, 1),
                reward_per_step=[round(x, 4) for x in steps.reward],
                frac_mixed_per_step=[round(x, 3) for x in steps["polaris/frac_mixed"]],
            )
        )
        print(
            json.dumps(
                {
                    x: stages[-1][x]
                    for x in (
                        "stage",
                        "train_seconds",
                        "heldout_acc",
                        "heldout_gain",
                        "heldout_gain_lo",
                        "heldout_gain_hi",
                        "steps_skipped",
                        "rescued_total",
                        "seconds_per_step",
                    )
                }
            ),
            flush=True,
        )
    st = cfg.stages
    result = dict(
        what="tiny preset, 3 POLARIS stages: held-out toy accuracy after each stage vs warm start",
        config=dict(
            temperature=args.temperature,
            overrides=over,
            learning_rate=[s.learning_rate for s in st],
            max_steps=[s.max_steps for s in st],
            prompts_per_step=[s.prompts_per_step for s in st],
            max_completion_length=[s.max_completion_length for s in st],
            heldout_problems=len(held),
            eval_samples=cfg.eval.k_for("toy"),
            eval_temperature=cfg.eval.temperature,
            threads=args.threads,
        ),
        timings=timings,
        stages=stages,
        final_gain=dict(
            acc_warmstart=stages[-1]["heldout_acc_warmstart"],
            acc_after_stage3=stages[-1]["heldout_acc"],
            gain=stages[-1]["heldout_gain"],
            gain_ci95=[stages[-1]["heldout_gain_lo"], stages[-1]["heldout_gain_hi"]],
            target=0.15,
        ),
        machine=dict(
            cpu_count=os.cpu_count(), platform=platform.platform(), load_avg=os.getloadavg()
        ),
    )
    write_json(args.out, result)
    print(json.dumps(result["final_gain"], indent=2))


if __name__ == "__main__":
    main()
