"""Issue 16 item 7: one progress line per optimizer step; report_to is a validated config field."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from polaris_lib.config import ConfigError, resolve
from polaris_lib.pipeline import plan_steps
from polaris_lib.pipeline.steps import fingerprints
from polaris_lib.training.grpo_config import to_grpo_config
from polaris_lib.training.progress import ProgressCallback, progress_line


def test_progress_line_has_every_quantity():
    logs = {
        "reward": 0.4375,
        "polaris/frac_mixed": 0.5,
        "polaris/frac_substituted": 0.25,
        "completions/mean_length": 212.4,
        "completions/clipped_ratio": 0.125,
    }
    line = progress_line(logs, 3, 20, 2.5, stage=1)
    assert line.startswith("[train stage 1] step 3/20  reward 0.438  mixed 50%")
    assert "substituted 25%" in line and "len 212" in line and "truncated 12%" in line
    assert "2.5 s/step" in line and "left 0m42s" in line
    assert "reward -" in progress_line({}, 1, 2, None)


def test_callback_prints_one_line_per_logged_step():
    out = io.StringIO()
    cb = ProgressCallback(2, stream=out)
    state = SimpleNamespace(global_step=4, max_steps=10, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    for step in (5, 6):
        state.global_step = step
        cb.on_log(None, state, None, logs={"reward": 0.5})
    cb.on_log(None, state, None, logs={"train_runtime": 1.0})  # the end-of-train summary: no line
    lines = out.getvalue().splitlines()
    assert [ln.split("  ")[0] for ln in lines] == [
        "[train stage 2] step 5/10",
        "[train stage 2] step 6/10",
    ]


def test_report_to_is_validated_passed_to_trl_and_not_fingerprinted():
    cfg = resolve("tiny", {"stages.*.report_to": "tensorboard"})
    assert to_grpo_config(cfg, 1, 1.0, "/tmp/x").report_to == ["tensorboard"]
    assert to_grpo_config(resolve("tiny", {}), 1, 1.0, "/tmp/x").report_to in ([], "none", ["none"])
    with pytest.raises(ConfigError, match="report_to must be one of"):
        resolve("tiny", {"stages.0.report_to": "mlflow"})
    plan = plan_steps(3)
    assert fingerprints(cfg.to_dict(), plan) == fingerprints(resolve("tiny", {}).to_dict(), plan)
