"""Step-time overhead of PolarisGRPOTrainer over plain TRL GRPOTrainer, and where a step's time goes.

Identical tiny configs (stage 1 of the `tiny` preset, toy warm start, the kit's grader), the same
data and seed. The two trainers run in one process and alternate step by step (plain step 1,
polaris step 1, plain step 2, ...: each runs train() in its own thread and a callback hands the
turn over at every optimizer step), so the load drift of a shared machine hits both alike; the
overhead is the median of the per-step ratios polaris/plain of adjacent steps. Step 1 is a
warm-up and is left out. Both trainers get the same timing mixin (it only wraps super() calls). PolarisGRPOTrainer runs with substitution and rescue on; its
low-mixed policy is 'train_mixed' with a tiny threshold, so that no step is skipped (a skipped step
has no backward and would flatter it); steps that were skipped anyway are left out and counted.
Writes benchmarks/results/trainer_overhead.json.

    .venv/bin/python benchmarks/trainer_overhead.py [--steps 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from polaris_lib.artifacts import write_json
from polaris_lib.config.presets import get_preset
from polaris_lib.grading.grader import make_reward_fn
from polaris_lib.toy import make_problems
from polaris_lib.toy.build import build_toy_world
from polaris_lib.training.grpo_config import to_grpo_config
from polaris_lib.training.stage import to_train_dataset
from polaris_lib.training.trainer import PolarisGRPOTrainer, PolarisOptions

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


class TurnTaking:
    """Trainer callback: wait for this trainer's turn before a step, hand the turn over after it."""

    def __init__(self, me: str, other: str, cond: threading.Condition, shared: dict):
        self.me, self.other, self.cond, self.shared = me, other, cond, shared

    def on_step_begin(self, args, state, control, **kwargs):
        with self.cond:
            self.cond.wait_for(lambda: self.shared["turn"] == self.me)

    def on_step_end(self, args, state, control, **kwargs):
        with self.cond:
            self.shared["turn"] = self.other
            self.cond.notify_all()

    def on_train_end(self, args, state, control, **kwargs):
        with self.cond:  # finished: never block the other one again
            self.shared["done"].add(self.me)
            self.shared["turn"] = self.other
            self.cond.notify_all()


def rows_of(kind: str, tr) -> list[dict]:
    logs = [h for h in tr.state.log_history if "step_time" in h]
    rows = []
    for i, h in enumerate(logs):
        gen = tr.timing["generate_and_score"][i]
        reward = h.get("polaris/time_reward", tr.timing["reward_call"][i])
        extra = h.get("polaris/time_polaris", 0.0)
        rows.append(
            dict(
                kind=kind,
                step=h["step"],
                step_time=h["step_time"],
                generation=gen - reward - extra,
                reward=reward,
                polaris_extra=extra,
                loss_and_backward=h["step_time"] - gen,
                skipped=h.get("polaris/skipped", 0.0),
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps each (1st = warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    cfg = get_preset("tiny")
    model_dir = str(build_toy_world(cfg.toy))
    from transformers import TrainerCallback

    cond, shared = threading.Condition(), {"turn": "plain", "done": set()}
    trainers, tmp = {}, tempfile.TemporaryDirectory()
    for kind, other in (("plain", "polaris"), ("polaris", "plain")):
        tr = build(kind, cfg, model_dir, f"{tmp.name}/{kind}", args.steps)
        cb = type("Turns", (TurnTaking, TrainerCallback), {})(kind, other, cond, shared)
        tr.add_callback(cb)
        trainers[kind] = tr
    t0 = time.perf_counter()
    threads = [threading.Thread(target=tr.train) for tr in trainers.values()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    rows = rows_of("plain", trainers["plain"]) + rows_of("polaris", trainers["polaris"])
    kept = [x for x in rows if x["step"] > 1 and not x["skipped"]]
    by_step = {(x["kind"], x["step"]): x["step_time"] for x in kept}
    ratios = [
        by_step[("polaris", s)] / by_step[("plain", s)]
        for s in range(2, args.steps + 1)
        if ("polaris", s) in by_step and ("plain", s) in by_step
    ]

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
            steps_each=args.steps,
            threads=args.threads,
        ),
        seconds_per_step=summary,
        overhead_ratio=round(statistics.median(ratios), 3),
        overhead_ratio_geomean=round(statistics.geometric_mean(ratios), 3),
        per_step_ratios=[round(r, 3) for r in ratios],
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
    write_json(OUT, result)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
