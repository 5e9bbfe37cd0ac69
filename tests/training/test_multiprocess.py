"""The stage trainer on several processes (accelerate, 2 CPU processes, gloo) vs one process.

Fast: the shipped accelerate configs load with accelerate's own loader and say what they claim.
Slow: the tiny preset trains 3 steps through scripts/train_stage.py on 1 process and under
`accelerate launch` on 2; the per-prompt log and substitution statistics must have the same
structure (one record per prompt per step, no duplicates from ranks), the global batch must be
the configured one, rescue buffers must agree across ranks, and training must change the weights.
5 prompts x 8 rollouts = 40 rows split 20/20, so group 3 (rows 16-23) straddles the two ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from polaris_lib import artifacts

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
PROMPTS, STEPS = 5, 3
OVERRIDES = {
    "stages.0.temperature": 1.0,  # no probe in this test
    "stages.0.max_steps": STEPS,
    "stages.0.prompts_per_step": PROMPTS,
    "stages.0.per_device_batch_size": 10,
    "stages.0.save_steps": 100,
}


# ----------------------------------------------------------------------------- configs
def test_accelerate_configs_load_and_say_what_they_claim():
    from accelerate.commands.config.config_args import load_config_from_file

    cfgs = {p.stem: load_config_from_file(str(p)) for p in sorted(CONFIGS.glob("*.yaml"))}
    assert set(cfgs) == {
        "cpu_2proc",
        "multi_gpu",
        "deepspeed_zero2",
        "deepspeed_zero3",
        "multi_node",
    }
    cpu = cfgs["cpu_2proc"]
    # torchrun launcher (MULTI_GPU) + CPU forced: the only way accelerate 1.15 spreads CPU work.
    assert (cpu.num_processes, cpu.use_cpu, cpu.distributed_type.value) == (2, True, "MULTI_GPU")
    assert cfgs["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2
    assert cfgs["deepspeed_zero3"].deepspeed_config["zero3_save_16bit_model"] is True
    node = cfgs["multi_node"]
    assert node.num_processes == node.num_machines * 8 and node.num_machines == 4  # paper: 4 x 8


def test_train_stage_cli_parses_overrides():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from train_stage import parse_args
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    a = parse_args(
        ["--preset", "tiny", "--stage", "2", "--run-dir", "r", "-p", "stages.1.max_steps", "3"]
    )
    assert (a.preset, a.stage, a.run_dir, a.param) == (
        "tiny",
        2,
        "r",
        [["stages.1.max_steps", "3"]],
    )


# ----------------------------------------------------------------------------- training runs
def _prepare_run(run_dir: Path) -> None:
    """A run folder with a 'curated' stage-1 set: the toy train split (no 01/02 needed)."""
    from polaris_lib.config.presets import get_preset
    from polaris_lib.data import load_dataset

    cfg = get_preset("tiny")
    df = load_dataset("toy", split="train", n=64, toy_cfg=cfg.toy, seed=0)
    df.attrs = {}
    artifacts.write_parquet(artifacts.step_dir(run_dir, artifacts.CURATE) / "curated.parquet", df)


def _train(run_dir: Path, processes: int) -> subprocess.CompletedProcess:
    args = ["scripts/train_stage.py", "--preset", "tiny", "--stage", "1", "--run-dir", str(run_dir)]
    for k, v in OVERRIDES.items():
        args += ["-p", k, json.dumps(v)]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        cmd = [accelerate, "launch", "--config_file", str(CONFIGS / "cpu_2proc.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for procs in (1, 2):
        run_dir = tmp_path_factory.mktemp(f"proc{procs}")
        _prepare_run(run_dir)
        res = _train(run_dir, procs)
        assert res.returncode == 0, (
            f"{procs} process(es):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
        )
        step = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, 1, create=False)
        out[procs] = {
            "dir": run_dir,
            "log": artifacts.read_jsonl(step / "reward_log.jsonl"),
            "steps": pd.read_parquet(step / "steps.parquet"),
            "metrics": artifacts.read_json(step / "metrics.json"),
        }
    return out


@pytest.mark.slow
def test_per_prompt_log_same_structure_one_record_per_prompt_per_step(runs):
    one, two = runs[1]["log"], runs[2]["log"]
    assert {frozenset(r) for r in one} == {frozenset(r) for r in two}  # same fields, every record
    for log in (one, two):
        per_step = Counter(r["step"] for r in log)
        # The configured global batch (5 prompts), not 5 per rank: ranks do not duplicate records.
        assert per_step == {s: PROMPTS for s in range(1, STEPS + 1)}
        assert len({(r["step"], r["problem_id"]) for r in log}) == len(log)
        assert all(len(r["rewards"]) == r["n"] == 8 for r in log)


@pytest.mark.slow
def test_substitution_statistics_same_columns_and_consistent(runs):
    cols = {p: {c for c in runs[p]["steps"].columns if c.startswith("polaris/")} for p in (1, 2)}
    assert cols[1] == cols[2] and {"polaris/frac_mixed", "polaris/frac_substituted"} <= cols[2]
    for p in (1, 2):
        steps, log = runs[p]["steps"], pd.DataFrame(runs[p]["log"])
        assert len(steps) == STEPS
        by_step = log.groupby("step")
        # The per-step fraction the trainer logged is what its per-prompt records say.
        mixed = by_step.kind.apply(lambda k: (k == "mixed").mean()).to_numpy()
        assert steps["polaris/frac_mixed"].to_numpy() == pytest.approx(mixed)
        for _, g in by_step:
            if g.action.iloc[0] == "substitute":  # every uniform group replaced by a mixed copy
                assert g.substituted.sum() == (g.kind != "mixed").sum()
                assert g.copies.sum() == g.substituted.sum()


@pytest.mark.slow
def test_two_processes_train_changes_weights_and_rescue_agrees(runs):
    import torch
    from transformers import AutoModelForCausalLM

    from polaris_lib.config.presets import get_preset
    from polaris_lib.toy.build import build_toy_world

    base = AutoModelForCausalLM.from_pretrained(
        build_toy_world(get_preset("tiny").toy)
    ).state_dict()
    for p in (1, 2):
        assert any(r["action"] != "skip" for r in runs[p]["log"]), "every step skipped: no signal"
        final = runs[p]["dir"] / "checkpoints" / "stage1" / "final"
        trained = AutoModelForCausalLM.from_pretrained(final).state_dict()
        changed = [k for k in base if not torch.equal(base[k], trained[k])]
        assert changed, f"{p} process(es): no parameter changed"
        assert runs[p]["metrics"]["train/num_processes"] == p
    m = runs[2]["metrics"]
    assert m["train/rescue_buffer_consistent"] is True
    assert (runs[2]["dir"] / "03_grpo_stage_stage1" / "next_stage_data.parquet").exists()
