"""Stage orchestration: inputs from the run folder, checkpoints, crash + resume, easy-drop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny_model import random_qwen3

from polaris_lib import artifacts, training
from polaris_lib.config import resolve
from polaris_lib.policy import load_policy
from polaris_lib.training.rescue import RESCUE_FILE

REPO = Path(__file__).resolve().parents[2]


def _cfg(run_dir, **over):
    base = {"stages.*.temperature": None}
    return resolve("tiny", {**base, **over}, section="stages", RUN_DIR=str(run_dir))


def _problems(n=6):
    return pd.DataFrame(
        {
            "problem_id": [f"toy/train/{i}+1" for i in range(n)],
            "problem": [f"{i}+1" for i in range(n)],
            "answer": [str(i + 1) for i in range(n)],
        }
    )


def test_inputs_come_from_the_run_folder(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(FileNotFoundError, match="run 02_curate_by_difficulty"):
        training.load_stage_data(cfg, 1)
    with pytest.raises(FileNotFoundError, match="STAGE=2"):
        artifacts.stage_temperature(cfg, 2)
    cur = artifacts.step_dir(tmp_path, artifacts.CURATE)
    artifacts.write_parquet(cur / "curated.parquet", _problems())
    assert len(training.load_stage_data(cfg, 1)) == 6
    artifacts.update_metrics(
        artifacts.step_dir(tmp_path, artifacts.PROBE, 2), {"probe/chosen_temperature": 1.2}
    )
    assert artifacts.stage_temperature(cfg, 2)[0] == 1.2
    cfg_t = _cfg(tmp_path, **{"stages.1.temperature": 0.7})
    assert artifacts.stage_temperature(cfg_t, 2) == (0.7, "config (stage.temperature)")
    with pytest.raises(FileNotFoundError, match="STAGE=1 first"):
        training.plan_stage(cfg, 2)  # stage 2 needs stage 1's final policy
    with pytest.raises(FileNotFoundError, match="STAGE=1"):
        training.load_stage_data(cfg, 2)
    bad = _problems()
    bad.loc[1, "problem_id"] = bad.problem_id[0]
    artifacts.write_parquet(cur / "curated.parquet", bad)
    with pytest.raises(ValueError, match="duplicated problem_id"):
        training.load_stage_data(cfg, 1)


def test_last_complete_checkpoint_skips_partial_ones(tmp_path):
    assert training.last_complete_checkpoint(tmp_path / "none") is None
    for n, files in [(2, ["trainer_state.json", RESCUE_FILE]), (10, ["trainer_state.json"])]:
        d = tmp_path / f"checkpoint-{n}"
        d.mkdir()
        for f in files:
            (d / f).write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert training.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")


def test_steps_table_one_row_per_step():
    hist = [
        {"step": 1, "reward": 0.1, "loss": 0.0},
        {"step": 2, "reward": 0.2},
        {"step": 2, "reward": 0.25},  # a resumed run logs step 2 again: keep the last
        {"step": 2, "train_runtime": 3.0},
    ]
    df = training.steps_table(hist)
    assert df.step.tolist() == [1, 2] and df.reward.tolist() == [0.1, 0.25]


def test_drop_easy_writes_next_stage_data(tmp_path):
    if not hasattr(pytest.importorskip("polaris_lib.training.easy_drop"), "easy_drop"):
        pytest.skip("easy_drop.easy_drop not written yet")
    cfg = _cfg(tmp_path)
    out = artifacts.step_dir(tmp_path, artifacts.GRPO_STAGE, 1)
    probs = _problems(3)
    log = [
        {"step": s, "problem_id": probs.problem_id[i], "pass_rate_pre_rescue": r}
        for s, rates in [(1, [1.0, 0.5, 0.0]), (2, [0.875, 1.0, 0.0])]
        for i, r in enumerate(rates)
    ]
    artifacts.append_jsonl(out / "reward_log.jsonl", log)
    kept, dropped = training.drop_easy(cfg, 1, out, probs)
    assert dropped.problem_id.tolist() == [probs.problem_id[0]]  # mean 0.9375 > 0.9
    assert sorted(kept.problem_id) == sorted(probs.problem_id[1:])
    assert len(pd.read_parquet(out / "next_stage_data.parquet")) == 2


# ----------------------------------------------------------------------------- crash + resume
RUNNER = """
import os, signal, sys
from transformers import TrainerCallback
from polaris_lib import artifacts, training
from polaris_lib.config import resolve
from polaris_lib.training import stage  # train_stage looks build_trainer up in its own module

class CrashAfterSave(TrainerCallback):
    # SIGKILL right after a checkpoint is on disk: a crash at a known step, however fast
    # the machine (polling for the checkpoint from outside raced a 0.5 s run on CI).
    def __init__(self, step):
        self.step = step
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

def main():
    run_dir, model_dir = sys.argv[1], sys.argv[2]
    crash_at = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if crash_at:
        build = stage.build_trainer
        def build_with_crash(*a, **k):
            trainer = build(*a, **k)
            trainer.add_callback(CrashAfterSave(crash_at))
            return trainer
        stage.build_trainer = build_with_crash
    over = {
        "model.name_or_path": model_dir, "stages.*.temperature": 1.0, "stages.*.max_steps": 6,
        "stages.*.prompts_per_step": 4, "stages.*.group_size": 4,
        "stages.*.per_device_batch_size": 8, "stages.*.save_steps": 1,
        "stages.*.max_completion_length": 12, "stages.*.learning_rate": 1e-3,
        "stages.*.low_mixed_policy": "train_mixed",
    }
    cfg = resolve("tiny", over, section="stages", RUN_DIR=run_dir)
    plan = training.plan_stage(cfg, 1)
    out = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, 1)
    print("RESUME_FROM", plan.resume_from, flush=True)
    print("SUMMARY", training.train_stage(cfg, plan, out, training.load_stage_data(cfg, 1)), flush=True)

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A saved tiny random Qwen3 with the toy tokenizer (no warm start: seconds to build)."""
    model, tok = random_qwen3(max_positions=128)
    path = tmp_path / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_kill_mid_stage_and_rerun_resumes_without_duplicates(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    cur = artifacts.step_dir(run_dir, artifacts.CURATE)
    artifacts.write_parquet(cur / "curated.parquet", _problems(8))
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    cmd = [sys.executable, str(script), str(run_dir), str(tiny_model_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    trl_dir = artifacts.checkpoint_dir(run_dir, 1) / "trl"
    crashed = subprocess.run(
        [*cmd, "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    # killed by SIGKILL after checkpoint-2: no cleanup, no final save
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout[-3000:] + crashed.stderr[-3000:]
    assert training.last_complete_checkpoint(trl_dir).endswith("checkpoint-2")
    assert not (artifacts.checkpoint_dir(run_dir, 1) / "final").exists()
    log_path = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, 1) / "reward_log.jsonl"
    steps_before = {r["step"] for r in artifacts.read_jsonl(log_path)}
    assert steps_before and max(steps_before) < 6

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    resumed = next(line for line in done.stdout.splitlines() if line.startswith("RESUME_FROM"))
    assert "checkpoint-" in resumed
    log = artifacts.read_jsonl(log_path)
    per_step = pd.Series([r["step"] for r in log]).value_counts().sort_index()
    assert per_step.index.tolist() == [1, 2, 3, 4, 5, 6]  # no lost step
    assert (per_step == 4).all()  # 4 prompts per step, none duplicated
    final = artifacts.checkpoint_dir(run_dir, 1) / "final"
    assert training.final_complete(final) and (final / RESCUE_FILE).exists()
    summary = json.loads((final / "stage_done.json").read_text())
    assert summary["steps"] == 6 and summary["resumed_from"]
    steps = pd.read_parquet(artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, 1) / "steps.parquet")
    assert steps.step.tolist() == [1, 2, 3, 4, 5, 6]
    cfg = _cfg(run_dir, **{"model.name_or_path": str(tiny_model_dir)})
    model, _ = load_policy(cfg, str(final))  # the next stage can load it
    assert model.config.vocab_size > 0


def _good_checkpoint(folder: Path, model_dir: Path) -> Path:
    """What TRL leaves in checkpoint-N (weights, state, optimizer, rescue buffer), in tiny."""
    import shutil

    import torch

    shutil.copytree(model_dir, folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": []}))
    torch.save({"state": {}, "param_groups": [{"lr": 1e-6}]}, folder / "optimizer.pt")
    (folder / RESCUE_FILE).write_text("{}")
    return folder


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {
    "model.safetensors": _truncate,
    "trainer_state.json": _truncate,
    "optimizer.pt": lambda p: p.write_bytes(os.urandom(4096)),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_checkpoint_on_resume_names_the_file_and_the_way_out(
    tmp_path, tiny_model_dir, name
):
    from polaris_lib.training.checkpoint_check import CorruptCheckpointError, check_checkpoint

    run_dir = tmp_path / "run"
    cur = artifacts.step_dir(run_dir, artifacts.CURATE)
    artifacts.write_parquet(cur / "curated.parquet", _problems())
    over = {"model.name_or_path": str(tiny_model_dir), "stages.0.temperature": 1.0}
    cfg = _cfg(run_dir, **over)
    trl_dir = artifacts.checkpoint_dir(run_dir, 1) / "trl"
    ckpt = _good_checkpoint(trl_dir / "checkpoint-2", tiny_model_dir)
    check_checkpoint(ckpt)  # a sound checkpoint passes
    CORRUPTIONS[name](ckpt / name)
    plan = training.plan_stage(cfg, 1)
    assert plan.resume_from == str(ckpt)
    out = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, 1)
    with pytest.raises(CorruptCheckpointError) as e:
        training.train_stage(cfg, plan, out, training.load_stage_data(cfg, 1))
    msg = str(e.value)
    assert str(ckpt / name) in msg
    assert f"delete {ckpt} to fall back to the previous checkpoint" in msg
    assert "weights_only" not in msg
