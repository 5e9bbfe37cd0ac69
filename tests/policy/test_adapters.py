"""LoRA adapter checkpoints (the stageN/final folders of the LoRA presets): no config.json, only
adapter_config.json naming the base model. Loading, RoPE variants and 04's checks resolve the base
through it (issue 12, defect 2); sampling carries the adapter (defect 4; the vLLM side runs in the
vLLM lane, tests/policy/test_vllm_cpu.py)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_model import save_adapter

from polaris_lib import extrapolate, toy
from polaris_lib.config import get_preset
from polaris_lib.config.sections import ConfigError
from polaris_lib.policy import load as models
from polaris_lib.policy.rope import rope_type, yarn_applied
from polaris_lib.policy.sampling import sample


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    """An untrained toy Qwen3 (the tiny preset's shape) and a LoRA adapter on it."""
    cfg = get_preset("tiny")
    root = tmp_path_factory.mktemp("lora")
    tok = toy.build_tokenizer()
    torch.manual_seed(0)
    toy.build_model(cfg.toy, tok).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    adapter = save_adapter(str(root / "base"), root / "checkpoints" / "stage1" / "final")
    return str(root / "base"), adapter


def test_adapter_folder_names_its_base(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    assert not (tmp_path / "x").exists() and models.adapter_config(base) is None
    assert models.base_model_path(adapter) == base
    assert models.base_config(adapter).to_dict() == models.base_config(base).to_dict()
    bad = tmp_path / "final"
    bad.mkdir()
    (bad / models.ADAPTER_CONFIG).write_text(json.dumps({"r": 4}))
    with pytest.raises(ConfigError, match="base_model_name_or_path"):
        models.base_config(bad)


@pytest.mark.parametrize("rope", ["yarn", "linear"])
def test_rope_variants_load_on_an_adapter_checkpoint(base_and_adapter, rope):
    """load_policy(run, <adapter folder>, rope) used to call AutoConfig on the adapter folder
    (ValueError: no config.json); the scaled config now comes from the base, the adapter stays."""
    base, adapter = base_and_adapter
    run = get_preset("tiny")
    model, _ = models.load_policy(run, adapter, rope)
    plain, _ = models.load_policy(run, base, rope)
    assert rope_type(model) == rope and yarn_applied(model) == (rope == "yarn")
    ids = torch.tensor([list(range(4, 40))])
    with torch.no_grad():
        assert (model(ids).logits - plain(ids).logits).abs().max() > 1e-3  # adapter applied


def test_extrapolation_checks_accept_an_adapter_checkpoint(base_and_adapter):
    """Notebook 04 on a LoRA preset: its settings table and RoPE check read the base config."""
    _, adapter = base_and_adapter
    cfg = get_preset("tiny")
    settings = extrapolate.variant_settings(cfg, adapter).set_index("variant")
    assert json.loads(settings.loc["yarn", "rope_parameters"])["rope_type"] == "yarn"
    check = extrapolate.rope_check(cfg, adapter).set_index("variant")
    assert check.loc["yarn", "yarn_applied"] and not check.loc["none", "yarn_applied"]
    assert check.loc["yarn", "rope_type"] == "yarn" and check.loc["linear", "rope_type"] == "linear"


def test_yarn_applied_reads_the_rope_type_from_the_config():
    """Unsloth's rotary modules carry no rope_type: the type is model.config's; a module that does
    declare one must agree."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4},
        max_position_embeddings=64,
    )
    model = Qwen3ForCausalLM(cfg)
    assert yarn_applied(model)
    for m in model.modules():  # as Unsloth's rotary module: no rope_type attribute
        if type(m).__name__.endswith("RotaryEmbedding"):
            del m.rope_type
    assert yarn_applied(model)
    model.config.rope_parameters = {"rope_type": "default", "rope_theta": 1e4}
    assert not yarn_applied(model)


def test_sampling_an_adapter_checkpoint_is_not_sampling_its_base(base_and_adapter):
    """The transformers path: the adapter is in the loaded weights (greedy outputs differ)."""
    base, adapter = base_and_adapter
    run = get_preset("tiny")
    problems = toy.make_problems(run.toy, "test", 4)
    kw = dict(n=1, temperature=0.0, max_new_tokens=12, progress=False)
    with_lora = sample(*models.load_policy(run, adapter), problems, **kw)
    plain = sample(*models.load_policy(run, base), problems, **kw)
    assert not with_lora.text.equals(plain.text)
