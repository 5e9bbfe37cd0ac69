"""Step-time overhead of PolarisGRPOTrainer over plain TRL GRPOTrainer, and where a step's time goes.

Identical tiny configs (stage 1 of the `tiny` preset, toy warm start, the kit's grader), the same
data and seed; the two trainers alternate in one process (plain, polaris, plain, ...) so machine
load drifts hit both. Each turn trains `--steps` optimizer steps from the same warm-start weights;
the first step of every turn is a warm-up and is left out. Both trainers get the same timing mixin
(it only wraps super() calls). PolarisGRPOTrainer runs with substitution and rescue on; its
low-mixed policy is 'train_mixed' with a tiny threshold, so that no step is skipped (a skipped step
has no backward and would flatter it); steps that were skipped anyway are left out and counted.
Writes benchmarks/results/trainer_overhead.json.

    .venv/bin/python benchmarks/trainer_overhead.py [--rounds 3] [--steps 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).parent / "results" / "trainer_overhead.json"


class TimedMixin:
    """Wall time of the generation+scoring phase, reward calls and whole training steps."""

    def _generate_and_score_completions(self, inputs):
        t0 = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self.timing["generate_and_score"].append(time.perf_counter() - t0)
        return out

    def _calculate_rewards(self, *args):
        t0 = time.perf_counter()
        out = super()._calculate_rewards(*args)
        self.timing["reward_call"].append(time.perf_counter() - t0)
        return out


def build(kind: str, cfg, model_dir: str, out_dir: str, steps: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    from polaris_lib.presets import to_grpo_config
    from polaris_lib.rewards import make_reward_fn
    from polaris_lib.stage import to_train_dataset
    from polaris_lib.toy import make_problems
    from polaris_lib.train import PolarisGRPOTrainer, PolarisOptions

    base = PolarisGRPOTrainer if kind == "polaris" else GRPOTrainer
    cls = type(f"Timed{base.__name__}", (TimedMixin, base), {})
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    problems = make_problems(cfg.toy, "train", 256, seed=0)
    args = to_grpo_config(cfg, 1, 1.0, out_dir, max_steps=steps, save_strategy="no")
    kw = dict(
        model=model,
        reward_funcs=make_reward_fn(thinking=cfg.model.thinking),
        args=args,
        train_dataset=to_train_dataset(problems, cfg.model.instruction_suffix),
        processing_class=tok,
    )
    if kind == "polaris":
        kw["polaris"] = PolarisOptions(
            substitution=True, low_mixed_policy="train_mixed", min_mixed_fraction=0.01, rescue=True
        )
    trainer = cls(**kw)
    trainer.timing = defaultdict(list)
    return trainer


def run_turn(kind, cfg, model_dir, steps) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        tr = build(kind, cfg, model_dir, d, steps)
        tr.train()
    logs = [h for h in tr.state.log_history if "step_time" in h]
    rows = []
    for i, h in enumerate(logs):
        gen = tr.timing["generate_and_score"][i]
        reward = h.get("polaris/time_reward", tr.timing["reward_call"][i])
        rows.append(
            dict(
                kind=kind,
                step=h["step"],
                step_time=h["step_time"],
                generate_and_score=gen,
                reward=reward,
                generation=gen - reward - h.get("polaris/time_polaris", 0.0),
                polaris_extra=h.get("polaris/time_polaris", 0.0),
                loss_and_backward=h["step_time"] - gen,
                skipped=h.get("polaris/skipped", 0.0),
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="alternations (each: plain then polaris)")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per turn (1st = warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from polaris_lib.presets import get_preset
    from polaris_lib.toy import build_toy_world

    cfg = get_preset("tiny")
    model_dir = str(build_toy_world(cfg.toy))
    rows = []
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for kind in ("plain", "polaris"):
            for row in run_turn(kind, cfg, model_dir, args.steps):
                rows.append(row | {"round": r})
    wall = time.perf_counter() - t0
    kept = [x for x in rows if x["step"] > 1 and not x["skipped"]]

    def med(kind, key):
        vals = [x[key] for x in kept if x["kind"] == kind]
        return statistics.median(vals) if vals else float("nan")

    keys = ("step_time", "generation", "reward", "polaris_extra", "loss_and_backward")
    summary = {k: {key: round(med(k, key), 4) for key in keys} for k in ("plain", "polaris")}
    st = cfg.stage(1)
    result = dict(
        what="PolarisGRPOTrainer vs plain GRPOTrainer, seconds per optimizer step (median)",
        config=dict(
            preset="tiny",
            stage=1,
            prompts_per_step=st.prompts_per_step,
            group_size=st.group_size,
            max_completion_length=st.max_completion_length,
            rounds=args.rounds,
            steps_per_turn=args.steps,
            threads=args.threads,
        ),
        seconds_per_step=summary,
        overhead_ratio=round(summary["polaris"]["step_time"] / summary["plain"]["step_time"], 3),
        target_ratio=1.05,
        skipped_steps_excluded=sum(1 for x in rows if x["skipped"]),
        steps_measured={k: sum(1 for x in kept if x["kind"] == k) for k in ("plain", "polaris")},
        wall_seconds=round(wall, 1),
        rows=rows,
        machine=dict(
            cpu_count=os.cpu_count(),
            platform=platform.platform(),
            load_avg=os.getloadavg(),
            torch=torch.__version__,
        ),
        note=(
            "Polaris re-grades nothing when no row is rescued (cached pre-rescue rewards); "
            "substitution changes which rows are trained, so loss_and_backward can differ by "
            "the token count of the copied groups. Run-to-run noise on shared CPUs is ~15%."
        ),
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
