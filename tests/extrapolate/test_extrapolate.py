"""Length extrapolation (04): RoPE variants take effect, the experiment resumes, tables add up."""

from __future__ import annotations

import pandas as pd
import pytest

from polaris_lib import extrapolate
from polaris_lib.config import apply_overrides, get_preset
from polaris_lib.policy.rope import linear_rope_parameters


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """An untrained toy Qwen3 saved like a stage checkpoint (no warm start: seconds)."""
    from polaris_lib.toy import build_model, build_tokenizer

    cfg = get_preset("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "checkpoints" / "stage1" / "final"
    tok = build_tokenizer()
    build_model(cfg.toy, tok).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_qwen3_variant_settings_keep_theta(tmp_path):
    """A Qwen3-4B-shaped config (theta 1e6, 40,960 positions) under the paper preset's YaRN."""
    import json

    from transformers import Qwen3Config

    qwen3 = Qwen3Config(
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, max_position_embeddings=40960
    )
    assert linear_rope_parameters(qwen3, 1.5) == {
        "rope_type": "linear",
        "factor": 1.5,
        "rope_theta": 1e6,
    }
    qwen3.save_pretrained(tmp_path)
    table = extrapolate.variant_settings(get_preset("qwen3-4b-paper"), str(tmp_path)).set_index(
        "variant"
    )
    yarn = json.loads(table.loc["yarn", "rope_parameters"])
    assert yarn == {
        "rope_type": "yarn",
        "factor": 1.5,
        "original_max_position_embeddings": 32768,
        "attention_factor": 1.0,
        "rope_theta": 1e6,
    }
    vllm = json.loads(table.loc["yarn", "vllm_kwargs"])
    # the paper presets run YaRN at the authors' evaluation context (yarn.max_context, RECIPE §7)
    assert vllm["hf_overrides"]["rope_parameters"] == yarn and vllm["max_model_len"] == 98304
    assert json.loads(table.loc["none", "rope_parameters"])["rope_theta"] == 1e6


def test_variants_load_and_change_position_handling(toy_checkpoint):
    cfg = get_preset("tiny")
    r = extrapolate.rope_check(cfg, toy_checkpoint).set_index("variant")
    yarn, none, linear = r.loc["yarn"], r.loc["none"], r.loc["linear"]
    assert (
        yarn["rope_type"] == "yarn" and yarn["rotary_rope_type"] == "yarn" and yarn["yarn_applied"]
    )
    assert yarn["factor"] == 1.5 and yarn["original_max_position_embeddings"] == 128
    assert yarn["rope_theta"] == cfg.toy.rope_theta and yarn["attention_scaling"] == 1.0
    # YaRN rescales only the low-frequency dims; linear interpolation rescales all of them.
    assert 0 < yarn["inv_freq_changed"] < yarn["inv_freq_dims"]
    assert linear["inv_freq_changed"] == linear["inv_freq_dims"] and not linear["yarn_applied"]
    assert linear["rope_type"] == "linear" and linear["rope_theta"] == cfg.toy.rope_theta
    assert none["logit_diff_inside"] == 0 and none["logit_diff_beyond"] == 0
    assert yarn["logit_diff_beyond"] > 1e-4 and linear["logit_diff_beyond"] > 1e-4


def test_extrapolation_runs_resumes_and_summarises(tmp_path):
    from polaris_lib.toy import reference_solution

    cfg = apply_overrides(
        get_preset("tiny"),
        {"yarn.n_problems": 6, "yarn.n_samples": 2, "yarn.eval_max_lengths": [40, 200]},
    )
    problems = extrapolate.extrapolation_problems(cfg)
    assert (
        len(problems) == 6
        and problems["difficulty"].max() <= cfg.toy.max_terms + extrapolate.EXTRA_TERMS
    )
    calls = {"load": 0, "sample": 0}

    def load(cfg, checkpoint, variant):
        calls["load"] += 1
        return variant, None

    def fake_sample(model, tok, probs, n, max_new_tokens, **kw):
        """'yarn' solves everything, 'none' only sample 0; a response past the budget is cut."""
        calls["sample"] += 1
        rows = []
        for p, q in zip(probs.problem_id, probs.problem, strict=True):
            for j in range(n):
                text = reference_solution(q) if model == "yarn" or j == 0 else "x"
                cut = len(text) > max_new_tokens
                rows.append(
                    dict(
                        problem_id=p,
                        sample_idx=j,
                        text=text[:max_new_tokens],
                        n_tokens=min(len(text), max_new_tokens),
                        finished=not cut,
                        truncated=cut,
                    )
                )
        return pd.DataFrame(rows)

    kw = dict(
        checkpoint=None,
        variants=("none", "yarn"),
        load_fn=load,
        sample_fn=fake_sample,
        log=lambda s: None,
    )
    res = extrapolate.run_extrapolation(cfg, tmp_path, problems, **kw)
    assert calls == {"load": 2, "sample": 4} and len(res) == 2 * 2 * 6 * 2
    again = extrapolate.run_extrapolation(cfg, tmp_path, problems, **kw)
    assert calls == {"load": 2, "sample": 4}
    pd.testing.assert_frame_equal(res, again)
    avg = extrapolate.avg_vs_length(res, n_boot=50).set_index(["variant", "max_length"])["avg"]
    assert avg[("yarn", 200)] == 1.0 and avg[("none", 200)] == 0.5
    assert avg[("yarn", 40)] < 1.0  # long traces are cut at 40 tokens and score 0
    b = extrapolate.bucket_accuracy(res, trained_length=80)
    assert (
        set(b["variant"]) == {"none", "yarn"}
        and b.groupby(["variant", "max_length"])["share"].sum().round(6).eq(1).all()
    )
    items = extrapolate.accuracy_by_item(res)
    assert list(items.columns) == ["none", "yarn"] and (items["yarn"] == 1.0).all()
    table = extrapolate.avg_vs_length(res, n_boot=50)
    # all 6 problems solved: the interval is Wilson's over 6 problems, not a zero-width bootstrap
    assert "- yarn: avg@2 1.000 [0.610, 1.000]" in extrapolate.findings(table, b, 80)
    check = pd.DataFrame(
        [
            dict(variant="none", rope_theta=1e4, yarn_applied=False),
            dict(
                variant="yarn",
                rope_theta=1e4,
                yarn_applied=True,
                factor=1.5,
                attention_factor=1.0,
                logit_diff_beyond=0.1,
            ),
        ]
    )
    m = extrapolate.metrics(table, b, check, 80)
    assert m["yarn/applied"] and m["yarn/rope_theta_kept"] and m["yarn/yarn/avg@2@200"] == 1.0
    assert m["yarn/none/avg@2@200"] == 0.5 and "yarn/yarn/acc_above_L" in m


def test_position_loss_reaches_beyond_the_original_context(toy_checkpoint):
    cfg = get_preset("tiny")
    loss = extrapolate.position_loss_for(cfg, toy_checkpoint, variants=("none", "yarn"))
    assert set(loss["variant"]) == {"none", "yarn"}
    assert loss["position"].max() > cfg.toy.max_position_embeddings
    assert (loss["loss"] > 0).all() and loss.groupby("variant")["n"].sum().nunique() == 1
    summary = extrapolate.loss_summary(loss, cfg.toy.max_position_embeddings).set_index("variant")
    assert summary.notna().all().all() and (summary["tokens_beyond"] > 0).all()
    n = loss[loss.variant == "yarn"]
    beyond = n[n.position >= 128]
    expect = (beyond["loss"] * beyond["n"]).sum() / beyond["n"].sum()
    assert summary.loc["yarn", "loss_beyond"] == pytest.approx(expect)
    settings = extrapolate.variant_settings(cfg, toy_checkpoint).set_index("variant")
    assert '"rope_type": "yarn"' in settings.loc["yarn", "rope_parameters"]
    assert '"max_model_len": 192' in settings.loc["yarn", "vllm_kwargs"]
    assert '"rope_theta": 10000.0' in settings.loc["linear", "vllm_kwargs"]
