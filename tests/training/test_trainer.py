"""PolarisGRPOTrainer: substitution, rescue, skip, reward log, resume, TRL API drift."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from polaris_lib import artifacts
from polaris_lib.training.rescue import RESCUE_FILE, RescueBuffer, latest_correct_rows, plan_rescue
from polaris_lib.training.reward_log import trim_reward_log
from polaris_lib.training.substitution import (
    ALL0,
    ALL1,
    MIXED,
    SKIP,
    SUBSTITUTE,
    TRAIN_MIXED,
    batch_action,
    group_kinds,
    plan_donors,
    substitute,
)
from polaris_lib.training.trainer import PolarisGRPOTrainer, PolarisOptions

N = 4  # group size in the hand-made batches


def _batch(rewards: list[float]) -> dict:
    """A hand-made generation batch: rows of a group contiguous, every row distinguishable."""
    rows = len(rewards)
    g = torch.arange(rows) // N
    lengths = 1 + g + torch.arange(rows) % 2  # completion lengths differ by row and by group
    width = int(lengths.max())
    comp_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    r = torch.tensor(rewards, dtype=torch.float32).view(-1, N)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
    return {
        "prompt_ids": torch.stack([g, g + 100], dim=1),
        "prompt_mask": torch.ones(rows, 2, dtype=torch.long),
        "completion_ids": (torch.arange(rows)[:, None] * 10 + torch.arange(width)) * comp_mask,
        "completion_mask": comp_mask,
        "advantages": adv,
        "old_per_token_logps": -torch.rand(rows, width),
        "importance_sampling_ratio": torch.rand(rows, width),
        "num_items_in_batch": comp_mask.sum(),
        "polaris_reward": torch.tensor(rewards),
        "polaris_answer": [f"ans{int(i)}" for i in g],
        "polaris_problem_id": [f"p{int(i)}" for i in g],
    }


# groups: 0 all-0, 1 mixed, 2 all-1, 3 mixed, 4 all-0, 5 mixed  -> 3/6 mixed (> 1/3: substitute)
REWARDS = [0, 0, 0, 0] + [1, 0, 0, 1] + [1, 1, 1, 1] + [0, 1, 0, 0] + [0] * 4 + [1, 1, 0, 1]


def test_group_kinds_and_decide():
    assert group_kinds(np.array(REWARDS), N).tolist() == [ALL0, MIXED, ALL1, MIXED, ALL0, MIXED]
    nan_group = np.array([np.nan, 0, 0, 0, np.nan, 1, 0, np.nan, np.nan, 1, np.nan, np.nan])
    assert group_kinds(nan_group, N).tolist() == [ALL0, MIXED, ALL1]
    assert batch_action(2, 6, "skip", 1 / 3) == SKIP  # exactly 1/3 mixed: the authors skip
    assert batch_action(3, 6, "skip", 1 / 3) == SUBSTITUTE
    assert batch_action(2, 6, "train_mixed", 1 / 3) == TRAIN_MIXED
    assert batch_action(0, 6, "train_mixed", 1 / 3) == SKIP  # nothing to learn from
    with pytest.raises(ValueError, match="low_mixed_policy"):
        batch_action(3, 6, "sometimes", 1 / 3)


def test_donors_without_replacement_while_enough_exist():
    kinds = np.array([MIXED, ALL0, MIXED, ALL1, MIXED, ALL0, ALL0, ALL0, ALL1])
    for seed in range(20):
        donors = plan_donors(kinds, np.random.default_rng(seed))
        mixed = np.flatnonzero(kinds == MIXED)
        assert (donors[mixed] == mixed).all()  # mixed groups are kept
        drawn = donors[kinds != MIXED]
        assert set(drawn) <= set(mixed)
        # 6 targets, 3 mixed: the first 3 draws are a permutation, and so are the next 3
        assert sorted(drawn[:3]) == sorted(mixed) and sorted(drawn[3:]) == sorted(mixed)


def test_substitution_copies_whole_rows_and_recomputes_token_count():
    batch = _batch(REWARDS)
    out, res = substitute(
        batch,
        torch.tensor(REWARDS, dtype=torch.float32),
        N,
        policy="skip",
        min_mixed_fraction=1 / 3,
        rng=np.random.default_rng(0),
    )
    assert res.action == SUBSTITUTE
    assert res.kinds.tolist() == [ALL0, MIXED, ALL1, MIXED, ALL0, MIXED]
    replaced = [0, 2, 4]
    assert [g for g in range(6) if res.donors[g] != g] == replaced
    assert sorted(res.donors[replaced]) == [1, 3, 5]  # 3 targets, 3 mixed: no donor reused
    for g in range(6):
        d = int(res.donors[g])
        dst, src = slice(g * N, (g + 1) * N), slice(d * N, (d + 1) * N)
        for key in ("prompt_ids", "completion_ids", "completion_mask", "advantages"):
            assert torch.equal(out[key][dst], batch[key][src]), key
        for key in ("old_per_token_logps", "importance_sampling_ratio", "polaris_reward"):
            assert torch.equal(out[key][dst], batch[key][src]), key
        # copies carry their rewards AND answers AND problem ids together (the authors' bug)
        assert out["polaris_answer"][dst] == batch["polaris_answer"][src]
        assert out["polaris_problem_id"][dst] == batch["polaris_problem_id"][src]
    # every group is informative now: advantages of copies equal their donors', none all-zero
    assert (out["advantages"].view(-1, N).abs().sum(1) > 0).all()
    # the dapo normaliser counts the tokens actually in the new batch
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert int(out["num_items_in_batch"]) != int(batch["num_items_in_batch"])
    assert out["num_items_in_batch"].dtype == batch["num_items_in_batch"].dtype
    f = res.fractions()
    assert f["frac_all0"] == pytest.approx(2 / 6) and f["frac_all1"] == pytest.approx(1 / 6)
    assert f["frac_substituted"] == pytest.approx(0.5) and f["skipped"] == 0.0


def test_low_mixed_policies():
    low = [0] * 4 + [1, 0, 0, 0] + [1] * 4  # 1 of 3 groups mixed: <= 1/3
    batch = _batch(low)
    r = torch.tensor(low, dtype=torch.float32)
    out, res = substitute(batch, r, N, policy="skip", min_mixed_fraction=1 / 3, rng=None)
    assert res.action == SKIP and res.fractions()["skipped"] == 1.0
    assert torch.equal(out["completion_ids"], batch["completion_ids"])
    out, res = substitute(batch, r, N, policy="train_mixed", min_mixed_fraction=1 / 3, rng=None)
    assert res.action == TRAIN_MIXED
    kept = out["completion_mask"].view(3, N, -1).sum((1, 2))
    assert kept[0] == 0 and kept[2] == 0 and kept[1] == batch["completion_mask"][N : 2 * N].sum()
    assert int(out["num_items_in_batch"]) == int(kept.sum())


def test_rescue_buffer_and_plan(tmp_path):
    buf = RescueBuffer()
    rewards = np.array([0, 1, 1, 0] + [0, 0, 0, 0] + [0, 0, 0, 0] + [1, 1, 1, 1], dtype=float)
    pids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 4
    rows = latest_correct_rows(rewards, N)
    assert rows == [2, 15]  # the most recent correct rollout of each group
    buf.update([(pids[r], [7, r, 2], f"text{r}") for r in rows])
    assert buf.get("a")["ids"] == [7, 2, 2] and buf.get("d")["completion"] == "text15"
    buf.update([("a", [9, 2], "newer")])
    assert buf.get("a")["ids"] == [9, 2]  # the latest correct response replaces the older one
    buf.update([("b", [5, 5, 5, 2], "b-ok")])
    # b and c are all-0; only b has a buffered answer; a and d are not all-0
    assert plan_rescue(rewards, pids, N, buf) == {4: "b"}
    assert plan_rescue(rewards, pids, N, buf, max_completion_length=3) == {}  # too long now
    nan_rewards = rewards.copy()
    nan_rewards[5] = np.nan  # an unscorable row: the group is not all-0
    assert plan_rescue(nan_rewards, pids, N, buf) == {}
    buf.save(tmp_path / RESCUE_FILE)
    assert RescueBuffer.load(tmp_path).entries == buf.entries
    assert len(RescueBuffer.load(tmp_path / "missing.json")) == 0


def test_reward_log_trim_and_torn_line(tmp_path):
    path = tmp_path / "reward_log.jsonl"
    artifacts.append_jsonl(path, [{"step": s, "problem_id": f"p{s}"} for s in (1, 2, 3, 4)])
    with open(path, "a") as f:
        f.write('{"step": 5, "prob')  # a crash mid-write
    assert trim_reward_log(path, 3) == 3
    assert [r["step"] for r in artifacts.read_jsonl(path)] == [1, 2, 3]
    assert path.read_text().endswith("\n")
    assert trim_reward_log(tmp_path / "none.jsonl", 3) == 0


# ----------------------------------------------------------------------------- TRL API drift
OVERRIDDEN = {
    "_generate": ["self", "prompts"],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["self", "inputs"],
    "compute_loss": ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    "_save_checkpoint": ["self", "model", "trial"],
    "train": ["self", "resume_from_checkpoint"],
}


def test_trl_api_drift():
    from trl import GRPOTrainer

    for name, params in OVERRIDDEN.items():
        assert hasattr(GRPOTrainer, name), f"TRL GRPOTrainer lost {name}"
        got = list(inspect.signature(getattr(GRPOTrainer, name)).parameters)
        assert got[: len(params)] == params, f"{name}: TRL signature is now {got}"
    # _generate returns 8 values in TRL 1.15 (the rescue seam unpacks them)
    src = inspect.getsource(GRPOTrainer._generate)
    assert (
        "return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra_fields" in src
    )
    # the batch dict keys the substitution relies on, and the dapo normaliser key
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for key in ('"completion_mask"', '"advantages"', '"num_items_in_batch"', "process_slice"):
        assert key in src, key
    assert 'inputs["num_items_in_batch"]' in inspect.getsource(GRPOTrainer._compute_loss)


def test_grpo_kwargs_are_grpoconfig_fields():
    import dataclasses

    from trl import GRPOConfig

    from polaris_lib.config.presets import get_preset
    from polaris_lib.training.grpo_config import grpo_kwargs

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    for preset in ("tiny", "qwen3-4b-paper"):
        kw = grpo_kwargs(get_preset(preset), 1, 1.0, "/tmp/x")
        assert set(kw) <= fields, sorted(set(kw) - fields)


def test_cpu_logprob_fallback_matches_log_softmax():
    from polaris_lib.training.trl_compat import torch_chunked_logprob

    torch.manual_seed(0)
    h, w, b = torch.randn(5, 8), torch.randn(11, 8), torch.randn(11)
    t = torch.tensor([0, 3, 10, 4, 4])
    lp, ent, lsq, mean, top1 = torch_chunked_logprob(h, w, b, t, 0.7, 4, 30.0, 2.0, ("entropy",))
    z = 30.0 * torch.tanh((h @ w.T + b) * 2.0 / 30.0) / 0.7
    ref = torch.log_softmax(z, -1)
    assert torch.allclose(lp, ref.gather(1, t[:, None]).squeeze(1), atol=1e-5)
    assert torch.allclose(ent, -(ref.exp() * ref).sum(-1), atol=1e-5)
    assert lsq is None and mean is None and top1 is None


# ----------------------------------------------------------------------------- real trainer
def _parity_reward(prompts, completions, completion_ids=None, **kw):
    """Stand-in reward (tests only): 1 when the completion's token ids sum to an even number."""
    return [float(sum(ids) % 2 == 0) for ids in completion_ids]


def _trainer(tiny_world, tmp_path, reward=_parity_reward, steps=2, **opts):
    from trl import GRPOConfig

    model, tok, ds = tiny_world()
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        num_generations=4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        steps_per_generation=2,
        max_completion_length=8,
        max_steps=steps,
        learning_rate=1e-3,
        weight_decay=0.1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_steps=1,
        loss_type="dapo",
        beta=0.0,
        gradient_checkpointing=False,
        remove_unused_columns=False,
        disable_dropout=True,
        seed=0,
    )
    return PolarisGRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        polaris=PolarisOptions(**opts),
        reward_log_path=tmp_path / "reward_log.jsonl",
    )


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _changed(before, model) -> float:
    return sum((a - b).abs().sum().item() for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.slow
def test_train_changes_weights_and_logs(tiny_world, tmp_path):
    tr = _trainer(tiny_world, tmp_path, min_mixed_fraction=0.01)
    before = _params(tr.model)
    tr.train()
    assert _changed(before, tr.model) > 0
    log = artifacts.read_jsonl(tmp_path / "reward_log.jsonl")
    assert sorted({r["step"] for r in log}) == [1, 2]
    assert all(
        len(r["rewards"]) == 4 and r["pass_rate_pre_rescue"] == np.mean(r["rewards"]) for r in log
    )
    assert len(log) == 2 * 4  # 4 prompts (groups) per step
    hist = [h for h in tr.state.log_history if "polaris/frac_mixed" in h]
    assert len(hist) == 2
    h = hist[0]
    assert h["polaris/frac_all0"] + h["polaris/frac_all1"] + h["polaris/frac_mixed"] == 1.0
    assert (tmp_path / "trl" / "checkpoint-2" / RESCUE_FILE).exists()


@pytest.mark.slow
def test_skipped_step_changes_nothing(tiny_world, tmp_path):
    """All-0 rewards: no mixed group, the step is skipped; weight decay must not act either."""
    tr = _trainer(tiny_world, tmp_path, reward=lambda completions, **kw: [0.0] * len(completions))
    before = _params(tr.model)
    tr.train()
    assert _changed(before, tr.model) == 0.0
    assert all(len(s) == 0 for s in tr.optimizer.state.values())  # AdamW moments untouched
    assert all(h["polaris/skipped"] == 1.0 for h in tr.state.log_history if "polaris/skipped" in h)


@pytest.mark.slow
def test_rescue_replaces_one_failed_rollout_before_grading(tiny_world, tmp_path):
    """A buffered 'correct' response is the only thing the reward accepts: it is graded as such."""
    gold = [7, 8, 9]

    def reward(completion_ids=None, **kw):
        return [float(list(ids) == gold) for ids in completion_ids]

    tr = _trainer(tiny_world, tmp_path, reward=reward, steps=1)
    tr.rescue_buffer.update([(pid, gold, "buffered") for pid in ("p0", "p1")])
    tr.train()
    log = artifacts.read_jsonl(tmp_path / "reward_log.jsonl")
    for r in log:
        assert r["pass_rate_pre_rescue"] == 0.0  # the pre-rescue pass rate is what curation reads
        assert r["rescued"] == (r["problem_id"] in ("p0", "p1"))
        # rescued groups became mixed (one 1 among 0s), the others stay all-0
        assert r["kind"] == ("mixed" if r["rescued"] else "all0")
    hist = next(h for h in tr.state.log_history if "polaris/rescued" in h)
    rescued = sum(r["rescued"] for r in log)
    assert rescued >= 1 and hist["polaris/rescued"] == rescued
    assert hist["reward"] == pytest.approx(rescued / (len(log) * 4))  # post-rescue reward


@pytest.mark.slow
def test_resume_keeps_reward_log_exact_and_buffer(tiny_world, tmp_path):
    tr = _trainer(tiny_world, tmp_path, steps=3, min_mixed_fraction=0.01)
    tr.train()
    full = artifacts.read_jsonl(tmp_path / "reward_log.jsonl")
    # pretend the run crashed after step 3 was logged but only checkpoint-2 survived
    buf = json.loads((tmp_path / "trl" / "checkpoint-2" / RESCUE_FILE).read_text())
    import shutil

    shutil.rmtree(tmp_path / "trl" / "checkpoint-3")
    tr2 = _trainer(tiny_world, tmp_path, steps=3, min_mixed_fraction=0.01)
    tr2.train(resume_from_checkpoint=True)
    log = artifacts.read_jsonl(tmp_path / "reward_log.jsonl")
    steps = [r["step"] for r in log]
    assert sorted(set(steps)) == [1, 2, 3] and len(log) == len(full)
    assert [r for r in log if r["step"] <= 2] == [r for r in full if r["step"] <= 2]
    assert set(buf) <= set(tr2.rescue_buffer.entries)


def test_completions_keep_think_tags_for_the_grader(tiny_world, tmp_path):
    """TRL decodes with skip_special_tokens=True, which would delete the toy's </think>."""
    tr = _trainer(tiny_world, tmp_path)
    tok = tr.processing_class
    ids = tok("</think>\\boxed{4}", add_special_tokens=False).input_ids + [tok.eos_token_id]
    out = tr._decode_keeping_special([ids], [[{"role": "assistant", "content": "lossy"}]])
    assert out == [[{"role": "assistant", "content": "</think>\\boxed{4}"}]]
    assert tr._decode_keeping_special([ids], ["lossy"]) == ["</think>\\boxed{4}"]


class _FakeRanks:
    """accelerate stand-in for rank `rank` of len(locals) processes (pad + gather semantics)."""

    def __init__(self, rank, locals_):
        self.num_processes, self.process_index, self.locals = len(locals_), rank, locals_
        self.tags = {}

    def _key(self, v):
        return next(k for k, t in self.locals[self.process_index].items() if t is v)

    def _pad(self, t, width, fill, first):
        extra = torch.full((t.shape[0], width - t.shape[1]), fill, dtype=t.dtype)
        return torch.cat([extra, t] if first else [t, extra], dim=1)

    def pad_across_processes(self, v, dim, pad_index, pad_first):
        key = self._key(v)
        width = max(loc[key].shape[1] for loc in self.locals)
        out = self._pad(v, width, pad_index, pad_first)
        self.tags[id(out)] = (key, pad_index, pad_first)
        return out

    def gather(self, v):
        key, fill, first = self.tags.get(id(v)) or (self._key(v), 0, False)
        if v.ndim == 1:
            return torch.cat([loc[key] for loc in self.locals])
        width = max(loc[key].shape[1] for loc in self.locals)
        return torch.cat([self._pad(loc[key], width, fill, first) for loc in self.locals])


def test_substitution_across_ranks_equals_single_process():
    """4 ranks x 6 rows, groups of 4: groups straddle ranks. Gather -> substitute -> slice gives
    every rank exactly the rows one process would have given it."""
    from polaris_lib.training.substitution import PROMPT_KEYS, gather_rows, local_rows

    batch = _batch(REWARDS)
    del batch["num_items_in_batch"]
    rewards = torch.tensor(REWARDS, dtype=torch.float32)
    kw = dict(policy="skip", min_mixed_fraction=1 / 3)
    single, _ = substitute(batch, rewards, N, rng=np.random.default_rng(7), **kw)
    n_local, ranks = 6, 4
    locals_ = []
    for r in range(ranks):  # each rank's completion tensors only as wide as its longest one
        loc = local_rows(batch, 24, n_local, r)
        w = int(loc["completion_mask"].sum(1).max())
        trim = {k: v[:, :w] for k, v in loc.items() if torch.is_tensor(v) and v.ndim == 2}
        locals_.append(loc | {k: v for k, v in trim.items() if k not in PROMPT_KEYS})

    for r in range(ranks):

        def gather_object(x, r=r):
            key = next(k for k, v in locals_[r].items() if v is x)
            return [y for loc in locals_ for y in loc[key]]

        gathered = gather_rows(locals_[r], n_local, _FakeRanks(r, locals_), gather_object, 0)
        out, _ = substitute(gathered, rewards, N, rng=np.random.default_rng(7), **kw)
        mine, want = local_rows(out, 24, n_local, r), local_rows(single, 24, n_local, r)
        for key in ("prompt_ids", "completion_ids", "completion_mask", "advantages"):
            got = mine[key][:, : want[key].shape[1]] if want[key].ndim == 2 else mine[key]
            assert torch.equal(got, want[key]), (r, key)
        assert torch.equal(mine["polaris_reward"], want["polaris_reward"])
        assert mine["polaris_answer"] == want["polaris_answer"]
        assert mine["polaris_problem_id"] == want["polaris_problem_id"]
