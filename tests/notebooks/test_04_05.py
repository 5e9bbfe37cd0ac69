"""Notebooks 04 (length extrapolation) and 05 (evaluation): static checks, papermill on tiny."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from polaris_lib import artifacts, evaluate, extrapolate

REPO = Path(__file__).resolve().parents[2]
NB04 = "04_length_extrapolation.ipynb"
NB05 = "05_eval_aime.ipynb"
# Reduced sizes: 4 problems per benchmark (toy x 4 samples, AIME x 2) for two checkpoints;
# 8 extrapolation items x 2 samples x 2 budgets x 3 RoPE variants.
EVAL_OVERRIDES = {"eval.max_problems": 4, "eval.samples": {"toy": 4, "aime24": 2, "aime25": 2}}
YARN_OVERRIDES = {"yarn.n_problems": 8, "yarn.n_samples": 2, "yarn.eval_max_lengths": [64, 128]}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir, project_kernel):
    """A tiny run folder whose last stage's checkpoint is the toy policy (saved like one)."""
    from polaris_lib.config.presets import get_preset
    from polaris_lib.policy.load import load_policy

    cfg = get_preset("tiny")
    run = tmp_path_factory.mktemp("run")
    model, tok = load_policy(cfg)
    final = artifacts.checkpoint_dir(run, len(cfg.stages)) / "final"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    old = os.environ.get("POLARIS_DATA_DIR")
    os.environ["POLARIS_DATA_DIR"] = str(data_dir)  # the kernel inherits it (AIME files)
    yield run
    if old is None:
        os.environ.pop("POLARIS_DATA_DIR")
    else:
        os.environ["POLARIS_DATA_DIR"] = old


@pytest.mark.slow
@pytest.mark.notebook
def test_eval_notebook(run_dir, run_notebook, assert_figures_shown):
    run_notebook(
        NB05,
        run_dir / "nb05.ipynb",
        RUN_DIR=str(run_dir),
        OVERRIDES=EVAL_OVERRIDES,
        CHECKPOINTS=["base", "final"],
    )
    assert assert_figures_shown(run_dir / "nb05.ipynb") == 4
    step = artifacts.step_dir(run_dir, artifacts.EVALUATION, create=False)
    assert artifacts.step_done(step)
    m = evaluate.check_artifacts(step)
    responses = pd.read_parquet(step / "responses.parquet")
    assert len(responses) == 2 * (4 * 4 + 4 * 2 + 4 * 2) and responses.correct.notna().all()
    summary = pd.read_parquet(step / "summary.parquet").set_index(["checkpoint", "benchmark"])
    assert summary.loc[("final", "toy"), "k"] == 4 and summary.loc[("final", "aime24"), "k"] == 2
    # The toy policy answers its own task in format; AIME is a harness check it scores ~0 on.
    assert (
        summary.loc[("final", "toy"), "format_error_rate"] < 0.5 and not m["eval/toy/harness_only"]
    )
    assert m["eval/aime24/avg@2"] < 0.05 and m["eval/aime24/harness_only"]
    # 'final' here holds the base weights: same weights and seed give the same responses.
    by = responses.set_index(["checkpoint", "benchmark", "problem_id", "sample_idx"])["text"]
    assert by.loc["base"].equals(by.loc["final"])
    assert "bootstrap over problems" in m["eval/interval"]
    # issue 15: both intervals, the protocol, paired differences, the audit, the selection
    assert "problems held fixed" in m["eval/sampling_interval"]
    assert (
        m["eval/final/toy/sampling_lo"]
        <= m["eval/final/toy/avg@4"]
        <= m["eval/final/toy/sampling_hi"]
    )
    assert m["eval/final/toy/half_width"] > 0
    assert m["eval/protocol/temperature"] == 1.0 and m["eval/protocol/yarn"] is False
    assert "4 samples/problem" in m["eval/final/toy/protocol"]
    assert "truncated" in m["eval/final/toy/protocol"] and m["eval/final/toy/context_used"] > 0
    assert m["eval/paired/final_vs_base/toy/diff"] == 0.0  # same weights, same seed
    assert m["eval/paired/final_vs_base/toy/p_value"] == 1.0
    assert 0 <= m["eval/final/toy/grader_agreement"] <= 1
    assert (
        m["eval/reported_checkpoint"] == "final"
        and "no checkpoint is chosen" in m["eval/selection"]
    )
    protocol = pd.read_parquet(step / "protocol.parquet")
    assert set(protocol["protocol"]) == {"A", "B"}  # toy k=4, AIME k=2: two protocols, marked
    assert (protocol["context_note"] == "prompt + response").all()  # the prompt was measured
    assert set(pd.read_parquet(step / "grader_disagreements.parquet").columns) >= {
        "problem_id",
        "kit_correct",
        "authors_correct",
    }
    nb = (run_dir / "nb05.ipynb").read_text()
    assert "samples per problem" in nb and "SELECTED" not in nb  # the planner's answer is shown
    assert "no published POLARIS number" in nb  # the reference table for a non-paper model
    curve = pd.read_parquet(step / "pass_at_k.parquet")
    assert curve[curve.benchmark == "toy"].groupby("checkpoint").k.max().eq(4).all()
    for fig in evaluate.ARTIFACTS:
        if fig.endswith(".png"):
            assert (step / fig).stat().st_size > 5_000, fig
    assert json.loads((step / "config.json").read_text())["eval"]["checkpoints"] == [
        "base",
        "final",
    ]


@pytest.mark.slow
@pytest.mark.notebook
def test_length_extrapolation_notebook(run_dir, run_notebook, assert_figures_shown):
    run_notebook(NB04, run_dir / "nb04.ipynb", RUN_DIR=str(run_dir), OVERRIDES=YARN_OVERRIDES)
    assert assert_figures_shown(run_dir / "nb04.ipynb") == 3
    step = artifacts.step_dir(run_dir, artifacts.EXTRAPOLATION, create=False)
    assert artifacts.step_done(step)
    m = extrapolate.check_artifacts(step)
    assert m["yarn/applied"] and m["yarn/rope_theta_kept"] and m["yarn/factor"] == 1.5
    assert m["yarn/attention_factor"] == 1.0 and m["yarn/trained_length"] == 80
    results = pd.read_parquet(step / "results.parquet")
    assert len(results) == 3 * 2 * 8 * 2 and set(results.variant) == {"none", "yarn", "linear"}
    assert results.difficulty.max() > 8  # items with more terms than training saw
    for v in ("none", "yarn", "linear"):
        assert f"yarn/{v}/avg@2@128" in m and m[f"yarn/{v}/loss_beyond"] > 0
    check = pd.read_parquet(step / "rope_check.parquet").set_index("variant")
    assert (
        check.loc["yarn", "logit_diff_beyond"] > 0 and check.loc["none", "logit_diff_beyond"] == 0
    )
    loss = pd.read_parquet(step / "position_loss.parquet")
    assert loss.position.max() > 128 and set(loss.variant) == {"none", "yarn", "linear"}
