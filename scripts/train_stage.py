"""Train ONE GRPO stage of a run on several processes: the entry point `accelerate launch` runs.

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml scripts/train_stage.py \
        --preset tiny --stage 1 --run-dir reports/dev [-p stages.0.max_steps 3 ...]

It runs the same code as notebook 03 (polaris_lib.training.stage: plan, data, PolarisGRPOTrainer, final
checkpoint, the > 0.9 easy-drop) and writes the same files into the same run folder, so the
pipeline carries on from it. Every process executes this file; files are written once, by the
main process. It trains and stops: afterwards run notebook 03 for the stage (same RUN_DIR) for its
figures and held-out check; it finds checkpoints/stage{k}/final complete and reuses it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Run as a file (accelerate launch scripts/train_stage.py): make the kit importable from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The first import of trl comes through the training face, which imports Unsloth before it where
# the environment wants it (polaris_lib/training/backend.py): nothing above imports trl.
from polaris_lib import artifacts, training  # noqa: E402
from polaris_lib.artifacts import GRPO_STAGE, step_dir  # noqa: E402
from polaris_lib.config import PRESETS, parse_value, resolve  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, choices=PRESETS)
    ap.add_argument("--stage", type=int, required=True, help="stage number k (1-based)")
    ap.add_argument("--run-dir", required=True, help="run folder (reports/<run_id>)")
    ap.add_argument("--seed", type=int, default=0, help="global seed")
    ap.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="dotted config override, e.g. -p stages.0.max_steps 3 (VALUE parsed as JSON)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    overrides = {name: parse_value(value) for name, value in a.param}
    cfg = resolve(a.preset, overrides, SEED=a.seed, RUN_DIR=a.run_dir)
    from accelerate import PartialState

    # First use of accelerate's state decides the backend: on CPU it must know now (gloo).
    state = PartialState(cpu=cfg.model.device == "cpu")
    if cfg.model.name_or_path == "toy":
        from polaris_lib.toy.build import build_toy_world

        with state.main_process_first():  # build (or find) the cached toy model once
            build_toy_world(cfg.toy, progress=False)
    out = step_dir(cfg.run_dir, GRPO_STAGE, a.stage)
    plan = training.plan_stage(cfg, a.stage)
    problems = training.load_stage_data(cfg, a.stage)
    if state.is_main_process:
        artifacts.write_config(out, cfg, stage=a.stage, plan=plan.as_dict(), overrides=overrides)
    t0 = time.perf_counter()
    summary = training.train_stage(cfg, plan, out, problems)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 2)
    summary["num_processes"] = state.num_processes
    # Every rank holds its own rescue buffer; they must be the same (train.py decides on gathered
    # data). Compare their digests here, where all ranks still run.
    from accelerate.utils import gather_object

    digests = gather_object([summary.get("rescue_buffer_sha256")])
    summary["rescue_buffer_consistent"] = len(set(digests)) == 1
    if state.is_main_process:
        kept, dropped = training.drop_easy(cfg, a.stage, out, problems)
        summary.update(next_stage_problems=len(kept), easy_dropped=len(dropped))
        artifacts.update_metrics(out, {f"train/{k}": v for k, v in summary.items()})
        print(json.dumps(summary, default=str), flush=True)
    state.wait_for_everyone()
    # Close gloo/NCCL before interpreter exit: a live process group at exit can abort a rank
    # ("terminate called without an active exception", exit -6) after the work is done.
    state.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
