"""Ablation on the toy world: the POLARIS recipe against plain TRL GRPO, same steps, data and seeds.

- polaris: PolarisGRPOTrainer (substitution + low-mixed policy + rollout rescue + per-prompt log),
  the preset's 3 stages with their response lengths (48/64/80 on tiny), a per-stage temperature
  (--temperatures; the pipeline would take them from the probe), the > 0.9 easy-drop between
  stages, each stage starting from the previous one's policy.
- plain: TRL's GRPOTrainer, one stage of the same total steps at the last stage's length and the
  first stage's temperature, the same training problems, no easy-drop.
Both: same warm start, GRPOConfig from grpo_config.to_grpo_config (same lr, batch, clip, loss), same
seeds. Held-out accuracy (avg@k on the toy test split at the eval temperature) per seed; reported
as mean +- std over seeds for each arm. Writes benchmarks/results/ablation.json.

    .venv/bin/python benchmarks/ablation.py [--seeds 0 1 2] [--steps-scale 1.0] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from polaris_lib import artifacts, training
from polaris_lib.artifacts import write_json
from polaris_lib.config import parse_value
from polaris_lib.config.overrides import apply_overrides
from polaris_lib.config.presets import get_preset
from polaris_lib.grading.grader import make_reward_fn
from polaris_lib.policy.load import load_policy
from polaris_lib.toy import make_problems
from polaris_lib.training.grpo_config import to_grpo_config
from polaris_lib.training.stage import to_train_dataset

OUT = Path(__file__).parent / "results" / "ablation.json"


def polaris_arm(cfg, problems, temps, seed_dir: Path) -> str:
    """Three POLARIS stages through polaris_lib.training.stage; returns the final checkpoint."""

    over = {f"stages.{i}.temperature": t for i, t in enumerate(temps)}
    run = apply_overrides(cfg, over | {"run_dir": str(seed_dir)})
    artifacts.write_parquet(
        artifacts.step_dir(seed_dir, artifacts.CURATE) / "curated.parquet", problems
    )
    for k in range(1, len(run.stages) + 1):
        plan = training.plan_stage(run, k)
        out = artifacts.step_dir(seed_dir, artifacts.GRPO_STAGE, k)
        data = training.load_stage_data(run, k)
        training.train_stage(run, plan, out, data)
        training.drop_easy(run, k, out, data)
    return str(artifacts.checkpoint_dir(seed_dir, len(run.stages)) / "final")


def plain_arm(cfg, problems, temp: float, seed_dir: Path) -> str:
    """TRL's GRPOTrainer, one stage of the same total steps; returns the saved policy folder."""
    from trl import GRPOTrainer

    total = sum(s.max_steps for s in cfg.stages)
    last = cfg.stages[-1].max_completion_length
    run = apply_overrides(
        cfg, {"stages.0.max_steps": total, "stages.0.max_completion_length": last}
    )
    model, tok = load_policy(run, for_training=True)
    args = to_grpo_config(run, 1, temp, str(seed_dir / "trl"), save_strategy="no")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=make_reward_fn(thinking=run.model.thinking),
        args=args,
        train_dataset=to_train_dataset(problems, run.model.instruction_suffix),
        processing_class=tok,
    )
    trainer.train()
    final = seed_dir / "final"
    trainer.save_model(str(final))
    tok.save_pretrained(str(final))
    return str(final)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 1.0, 1.0])
    ap.add_argument("--steps-scale", type=float, default=1.0, help="x every stage's max_steps")
    ap.add_argument("--heldout", type=int, default=128, help="held-out toy problems")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a preset override for both arms, e.g. stages.0.max_completion_length=80",
    )
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    results, t_start = [], time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="ablation_"))
    for seed in args.seeds:
        base = get_preset("tiny")
        over = {"seed": seed, "eval.max_problems": args.heldout}
        for item in args.set:
            key, _, value = item.partition("=")
            over[key] = parse_value(value)  # as `polaris run -p`
        for i, st in enumerate(base.stages):
            over[f"stages.{i}.max_steps"] = max(1, round(st.max_steps * args.steps_scale))
        cfg = apply_overrides(base, over)
        problems = make_problems(cfg.toy, "train", cfg.curation.max_problems, seed=seed)
        held = training.heldout_problems(apply_overrides(cfg, {"seed": 0}))  # same for all
        warm = training.heldout_scores(cfg, None, held)
        for arm in ("polaris", "plain"):
            t0 = time.perf_counter()
            seed_dir = root / f"{arm}_seed{seed}"
            if arm == "polaris":
                final = polaris_arm(cfg, problems, args.temperatures, seed_dir)
            else:
                final = plain_arm(cfg, problems, args.temperatures[0], seed_dir)
            cmp = training.compare_heldout(cfg, warm, training.heldout_scores(cfg, final, held))
            results.append(
                dict(arm=arm, seed=seed, seconds=round(time.perf_counter() - t0, 1))
                | {k: cmp[k] for k in ("heldout_acc", "heldout_acc_warmstart", "heldout_gain")}
            )
            print(json.dumps(results[-1]), flush=True)

    def stats(arm, key):
        v = [r[key] for r in results if r["arm"] == arm]
        return dict(
            mean=round(statistics.mean(v), 4),
            std=round(statistics.stdev(v), 4) if len(v) > 1 else None,
        )

    summary = {
        arm: {k: stats(arm, k) for k in ("heldout_acc", "heldout_gain")}
        for arm in ("polaris", "plain")
    }
    cfg0 = get_preset("tiny")
    out = Path(args.out)
    result = dict(
        what="held-out toy accuracy after training: POLARIS recipe vs plain TRL GRPO (mean +- std over seeds)",
        seeds=args.seeds,
        temperatures=args.temperatures,
        steps_per_stage=[max(1, round(s.max_steps * args.steps_scale)) for s in cfg0.stages],
        eval_temperature=cfg0.eval.temperature,
        heldout_problems=args.heldout,
        overrides=args.set,
        samples_per_problem=cfg0.eval.k_for("toy"),
        summary=summary,
        runs=results,
        wall_seconds=round(time.perf_counter() - t_start, 1),
        machine=dict(cpu_count=os.cpu_count(), platform=platform.platform(), threads=args.threads),
    )
    write_json(out, result)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
