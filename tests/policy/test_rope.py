"""YaRN (RECIPE §6): rope_parameters for Qwen3 keep rope_theta; the toy model loads with it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from polaris_lib import toy
from polaris_lib.config.sections import ToyConfig, YarnConfig
from polaris_lib.policy import rope

PAPER = YarnConfig(factor=1.5, original_max_position_embeddings=32768, attention_factor=1.0)


def qwen3_4b_like() -> Qwen3Config:
    """Qwen3-4B's RoPE settings (theta 1e6, 40,960 positions), without downloading anything."""
    return Qwen3Config(
        max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )


def test_yarn_parameters_keep_theta_and_set_factor():
    params = rope.yarn_rope_parameters(qwen3_4b_like(), PAPER)
    assert params == {
        "rope_type": "yarn",
        "factor": 1.5,
        "original_max_position_embeddings": 32768,
        "attention_factor": 1.0,
        "rope_theta": 1_000_000.0,
    }


def test_apply_yarn_returns_a_new_valid_config():
    base = qwen3_4b_like()
    new = rope.apply_yarn(base, PAPER)
    assert base.rope_parameters["rope_type"] == "default"  # input untouched
    assert new.rope_parameters["rope_type"] == "yarn"
    assert new.rope_parameters["rope_theta"] == 1_000_000.0
    assert new.max_position_embeddings == 49152  # 32768 x 1.5 > 40960
    new.validate_rope()  # transformers' own check of the yarn keys


def test_vllm_overrides():
    kw = rope.vllm_yarn_kwargs(qwen3_4b_like(), PAPER)
    assert kw["max_model_len"] == 49152
    assert kw["hf_overrides"]["rope_parameters"]["rope_theta"] == 1_000_000.0
    assert kw["hf_overrides"]["rope_parameters"]["rope_type"] == "yarn"


def test_missing_theta_is_refused():
    cfg = qwen3_4b_like()
    cfg.rope_parameters = {"rope_type": "default"}
    with pytest.raises(ValueError, match="rope_theta"):
        rope.yarn_rope_parameters(cfg, PAPER)


def test_toy_model_with_yarn(tmp_path):
    """Logits: identical at position 0, changed a little inside the original range (YaRN
    rescales the low-frequency dimensions everywhere), changed more beyond it."""
    cfg = ToyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
    tok = toy.build_tokenizer()
    model = toy.build_model(cfg, tok).eval()
    model.save_pretrained(tmp_path)
    yarn = YarnConfig(factor=1.5, original_max_position_embeddings=cfg.max_position_embeddings)
    ymodel = AutoModelForCausalLM.from_pretrained(
        tmp_path, config=rope.apply_yarn(tmp_path, yarn)
    ).eval()
    assert rope.yarn_applied(ymodel) and not rope.yarn_applied(model)
    assert ymodel.config.rope_parameters["rope_theta"] == cfg.rope_theta
    assert ymodel.model.rotary_emb.attention_scaling == 1.0  # attention_factor 1.0 honoured
    long = int(cfg.max_position_embeddings * 1.4)
    ids = torch.randint(10, len(tok), (2, long), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(ids).logits - ymodel(ids).logits).abs().amax(-1).mean(0)  # (T,)
    assert diff[0] < 1e-5
    near, beyond = diff[1:16].mean(), diff[cfg.max_position_embeddings :].mean()
    assert 0 < near < beyond / 2
