"""Substitution modes (intent / released / off), the skip rule switch, skipped-step accounting.

RECIPE §4: the authors' released code re-grades copied groups against the replaced group's answer;
verl `continue`s past a skipped batch without advancing its step counter. Both are options here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_trainer import REWARDS, N, _batch, _changed, _params, _trainer

from polaris_lib.config import ConfigError
from polaris_lib.config.overrides import apply_overrides
from polaris_lib.config.presets import get_preset
from polaris_lib.config.sections import StageConfig
from polaris_lib.training.grpo_config import grpo_kwargs
from polaris_lib.training.substitution import KEEP, SKIP, SUBSTITUTE, batch_action, substitute


def _answer_regrader(batch, rows):
    """Reward of a row = 1 when its completion's group tag matches its answer's (hand-made batch:
    completion_ids of group g start at 10*row; polaris_answer is 'ans<g>')."""
    out = []
    for r in rows.tolist():
        donor_group = int(batch["prompt_ids"][r, 0])  # the row's own (possibly copied) group
        out.append(float(batch["polaris_answer"][r] == f"ans{donor_group}"))
    return torch.tensor(out)


def test_released_copies_are_regraded_against_the_replaced_answer():
    batch = _batch(REWARDS)
    rewards = torch.tensor(REWARDS, dtype=torch.float32)
    out, res = substitute(
        batch,
        rewards,
        N,
        policy="skip",
        min_mixed_fraction=1 / 3,
        rng=np.random.default_rng(0),
        mode="released",
        regrade=_answer_regrader,
    )
    assert res.action == SUBSTITUTE
    for g in (0, 2, 4):  # the replaced groups: donor rows, target answer, reward 0, advantage 0
        d = int(res.donors[g])
        dst, src = slice(g * N, (g + 1) * N), slice(d * N, (d + 1) * N)
        assert torch.equal(out["completion_ids"][dst], batch["completion_ids"][src])
        assert out["polaris_answer"][dst] == batch["polaris_answer"][dst]  # the target's answer
        assert out["polaris_reward"][dst].tolist() == [0.0] * N
        assert out["advantages"][dst].abs().max() == 0
    for g in (1, 3, 5):  # kept groups are untouched
        sl = slice(g * N, (g + 1) * N)
        assert torch.equal(out["advantages"][sl], batch["advantages"][sl])
    # the copies' tokens still count in the dapo normaliser (the release's dilution)
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())


def test_released_regrade_that_matches_gets_grpo_advantages():
    """A copy whose response happens to answer the target right is graded right (not forced 0)."""
    batch = _batch(REWARDS)

    def half_right(batch, rows):
        return torch.tensor([1.0, 0.0] * (len(rows) // 2))

    out, res = substitute(
        batch,
        torch.tensor(REWARDS, dtype=torch.float32),
        N,
        policy="skip",
        min_mixed_fraction=1 / 3,
        rng=np.random.default_rng(0),
        mode="released",
        regrade=half_right,
    )
    adv = out["advantages"][:N]
    r = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = (r - r.mean()) / (r.std() + 1e-4)
    assert torch.allclose(adv, expected)
    assert out["polaris_reward"][:N].tolist() == r.tolist()


def test_off_keeps_the_batch_but_the_skip_rule_still_applies():
    batch = _batch(REWARDS)
    r = torch.tensor(REWARDS, dtype=torch.float32)
    out, res = substitute(
        batch, r, N, policy="skip", min_mixed_fraction=1 / 3, rng=None, mode="off"
    )
    assert res.action == KEEP and res.n_substituted == 0
    assert torch.equal(out["completion_ids"], batch["completion_ids"])
    low = [0] * 4 + [1, 0, 0, 0] + [1] * 4
    _, res = substitute(
        _batch(low),
        torch.tensor(low, dtype=torch.float32),
        N,
        policy="skip",
        min_mixed_fraction=1 / 3,
        rng=None,
        mode="off",
    )
    assert res.action == SKIP


def test_no_rule_policy_never_skips():
    assert batch_action(0, 6, "none", 1 / 3) == KEEP
    assert batch_action(1, 6, "none", 1 / 3) == SUBSTITUTE
    low = [0] * 4 + [1, 0, 0, 0] + [1] * 4
    _, res = substitute(
        _batch(low),
        torch.tensor(low, dtype=torch.float32),
        N,
        policy="none",
        min_mixed_fraction=1 / 3,
        rng=np.random.default_rng(0),
        mode="off",
    )
    assert res.action == KEEP and res.fractions()["skipped"] == 0.0


def test_stage_config_modes_and_bool_compatibility():
    assert StageConfig().substitution == "intent"
    assert StageConfig(substitution=False).substitution == "off"
    assert StageConfig(substitution=True).substitution == "intent"
    with pytest.raises(ConfigError, match="substitution"):
        StageConfig(substitution="sometimes")
    with pytest.raises(ConfigError, match="skipped_steps"):
        StageConfig(skipped_steps="never")


def test_redraw_gives_trl_room_and_optimizer_is_passed():
    run = apply_overrides(
        get_preset("tiny"), {"stages.*.skipped_steps": "redraw", "stages.*.optimizer": "sgd"}
    )
    kw = grpo_kwargs(run, 1, 1.0, "/tmp/x")
    assert kw["max_steps"] == 2 * run.stages[0].max_steps and kw["optim"] == "sgd"
    assert grpo_kwargs(get_preset("tiny"), 1, 1.0, "/tmp/x")["max_steps"] == 20


def test_paper_presets_run_the_authors_semantics():
    for name in ("qwen3-4b-paper",):
        for st in get_preset(name).stages:
            assert (st.substitution, st.skipped_steps, st.loss_type) == (
                "released",
                "redraw",
                "bnpo",
            )
    for st in get_preset("tiny").stages:
        assert (st.substitution, st.skipped_steps, st.loss_type) == ("intent", "count", "dapo")


@pytest.mark.slow
def test_redraw_trains_the_budget_of_updates(tiny_world, tmp_path):
    """Step 1's batch is all-0 (skipped): with 'redraw' the trainer still makes 2 updates."""
    calls = {"n": 0}

    def reward(completions, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            return [0.0] * len(completions)  # first batch: nothing mixed -> skipped
        return [float(i % 2) for i in range(len(completions))]  # every group mixed

    tr = _trainer(
        tiny_world,
        tmp_path,
        reward=reward,
        steps=4,
        min_mixed_fraction=0.01,
        trained_steps_budget=2,
    )
    before = _params(tr.model)
    tr.train()
    skipped = [h["polaris/skipped"] for h in tr.state.log_history if "polaris/skipped" in h]
    assert skipped == [1.0, 0.0, 0.0] and tr.trained_steps == 2
    assert tr.state.global_step == 3 and _changed(before, tr.model) > 0


@pytest.mark.slow
def test_released_mode_trains_with_real_regrading(tiny_world, tmp_path):
    """The trainer's own regrader decodes copied completions and grades them with the reward."""
    seen = []

    def reward(completions, answer, **kw):
        seen.append(list(answer))
        return [float(i % 3 == 0) for i in range(len(completions))]

    tr = _trainer(
        tiny_world,
        tmp_path,
        reward=reward,
        steps=1,
        substitution="released",
        min_mixed_fraction=0.01,
    )
    tr.train()
    assert tr.trained_steps == 1 and len(seen) >= 1
