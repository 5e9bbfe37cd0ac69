"""Two CPU processes (accelerate, gloo) vs one process on the tiny preset's stage 1.

Both runs train the same stage through scripts/train_stage.py with the same overrides (same
global batch: prompts_per_step x group_size rollouts per step), each in a fresh run folder, one
torch thread per process. Reported per configuration: wall time of the whole command (start-up
included), training seconds, mean seconds per step (TRL's step_time), rollouts per step (from the
per-prompt log) and rollouts per second; then the ratios 2-proc / 1-proc. CPU gloo is not
expected to be faster on a shared 2-core machine: the point is that it is correct (see
tests/training/test_multiprocess.py). Writes benchmarks/results/multiprocess.json.

    .venv/bin/python benchmarks/multiprocess.py [--steps 6] [--prompts 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polaris_lib import artifacts
from polaris_lib.artifacts import write_json
from polaris_lib.config.presets import get_preset
from polaris_lib.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "multiprocess.json"
sys.path.insert(0, str(ROOT))


def prepare(run_dir: Path, n: int) -> None:
    """A run folder whose 'curated' set is the toy train split (n problems)."""

    df = load_dataset("toy", split="train", n=n, toy_cfg=get_preset("tiny").toy, seed=0)
    df.attrs = {}
    artifacts.write_parquet(artifacts.step_dir(run_dir, artifacts.CURATE) / "curated.parquet", df)


def run(run_dir: Path, processes: int, overrides: dict) -> dict:
    """Train stage 1 once; wall time plus what the run folder recorded."""
    import pandas as pd

    args = ["scripts/train_stage.py", "--preset", "tiny", "--stage", "1", "--run-dir", str(run_dir)]
    for k, v in overrides.items():
        args += ["-p", k, json.dumps(v)]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        acc = str(Path(sys.executable).with_name("accelerate"))
        cfg = str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml")
        cmd = [acc, "launch", "--config_file", cfg, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{processes} process(es) failed:\n{res.stderr[-4000:]}")
    step = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, 1, create=False)
    steps = pd.read_parquet(step / "steps.parquet")
    log = artifacts.read_jsonl(step / "reward_log.jsonl")
    metrics = artifacts.read_json(step / "metrics.json")
    n_steps = len(steps)
    rollouts = sum(r["n"] for r in log)
    train_s = float(metrics["train/train_seconds"])
    return {
        "processes": processes,
        "wall_seconds": round(wall, 2),
        "train_seconds": train_s,
        "steps": n_steps,
        "mean_step_seconds": round(float(steps["step_time"].mean()), 3),
        "rollouts_per_step": rollouts / n_steps,
        "rollouts_per_second": round(rollouts / train_s, 2),
        "frac_mixed_mean": round(float(steps["polaris/frac_mixed"].mean()), 3),
        "rescue_buffer_consistent": metrics.get("train/rescue_buffer_consistent"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per run")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step (x 8 rollouts)")
    ap.add_argument("--pool", type=int, default=128, help="toy problems in the stage's data")
    a = ap.parse_args()
    rows = a.prompts * 8
    overrides = {
        "stages.0.temperature": 1.0,
        "stages.0.max_steps": a.steps,
        "stages.0.prompts_per_step": a.prompts,
        "stages.0.per_device_batch_size": rows // 2,  # 1 micro-batch per rank with 2 ranks
        "stages.0.save_steps": 1000,
    }
    results, load_before = [], os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (1, 2):
            run_dir = Path(tmp) / f"proc{procs}"
            prepare(run_dir, a.pool)
            results.append(run(run_dir, procs, overrides))
    one, two = results
    out = {
        "benchmark": "multiprocess",
        "what": "tiny preset stage 1 via scripts/train_stage.py: 1 process vs accelerate 2 CPU "
        "processes (gloo), same global batch",
        "command": f"benchmarks/multiprocess_scaling.py --steps {a.steps} --prompts {a.prompts} --pool {a.pool}",
        "overrides": overrides,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": 1},
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "runs": results,
        "ratio_2proc_over_1proc": {
            k: round(two[k] / one[k], 3)
            for k in ("wall_seconds", "train_seconds", "mean_step_seconds", "rollouts_per_second")
        },
        "same_rollouts_per_step": one["rollouts_per_step"] == two["rollouts_per_step"],
        "note": "2 CPU cores shared with other work; CPU gloo is not expected to be faster.",
    }
    write_json(OUT, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
