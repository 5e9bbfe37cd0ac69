"""load_policy: toy world, local folders, device resolution, GPU-only options without a GPU."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from polaris_lib import toy
from polaris_lib.config import PRESETS, get_preset
from polaris_lib.config.sections import ConfigError, ModelConfig, ToyConfig, YarnConfig
from polaris_lib.policy import load as models
from polaris_lib.policy.rope import yarn_applied
from polaris_lib.toy import build as toy_build

SMALL = ToyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, warmstart_steps=2)
NO_GPU = not torch.cuda.is_available()


def _run(model: ModelConfig, toy_cfg: ToyConfig | None = None, yarn: YarnConfig | None = None):
    """The tiny preset's RunConfig with this model (and toy world / YaRN) section."""
    run = dataclasses.replace(get_preset("tiny"), model=model, toy=toy_cfg)
    return dataclasses.replace(run, yarn=yarn) if yarn is not None else run


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    toy_build.build_toy_world(SMALL, root / "toy", progress=False, eval_per_difficulty=1)
    return root


@pytest.fixture()
def cache(small_cache, monkeypatch):
    monkeypatch.setenv("POLARIS_CACHE", str(small_cache))  # load_policy reuses the built world
    return small_cache


def test_toy_policy_loads_from_its_cached_folder(cache):
    model, tok = models.load_policy(_run(ModelConfig(device="cpu"), SMALL))
    assert type(model).__name__ == "Qwen3ForCausalLM" and not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert tok.eos_token == toy.IM_END
    assert (cache / "toy" / f"toy-{toy_build.config_hash(SMALL)}").is_dir()
    trainable, _ = models.load_policy(_run(ModelConfig(device="cpu"), SMALL), for_training=True)
    assert trainable.training


def test_local_folder_and_checkpoint_override(cache):
    path = toy_build.build_toy_world(SMALL, progress=False)
    a, _ = models.load_policy(_run(ModelConfig(name_or_path=str(path), device="cpu")))
    b, _ = models.load_policy(_run(ModelConfig(name_or_path="toy", device="cpu"), SMALL), str(path))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_toy_needs_a_toy_config():
    with pytest.raises(ConfigError, match="tiny"):
        models.load_policy(_run(ModelConfig(device="cpu")))


def test_yarn_through_load_policy(cache):
    yarn = YarnConfig(factor=2.0, original_max_position_embeddings=SMALL.max_position_embeddings)
    model, _ = models.load_policy(_run(ModelConfig(device="cpu"), SMALL, yarn), rope="yarn")
    assert yarn_applied(model)
    assert model.config.rope_parameters["rope_theta"] == SMALL.rope_theta
    plain, _ = models.load_policy(_run(ModelConfig(device="cpu"), SMALL))
    assert not yarn_applied(plain)


def test_device_resolution():
    assert models.resolve_device("cpu") == "cpu"
    assert models.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device"):
        models.resolve_device("tpu")


@pytest.mark.skipif(not NO_GPU, reason="checks the error shown on a machine without a GPU")
@pytest.mark.parametrize(
    "kw",
    [
        dict(backend="unsloth", device="auto", lora_rank=8),
        dict(use_vllm=True, device="auto"),
        dict(load_in_4bit=True, device="auto"),
    ],
)
def test_gpu_only_options_name_the_tiny_preset(kw):
    with pytest.raises(ConfigError, match="preset 'tiny'"):
        models.load_policy(_run(ModelConfig(name_or_path="Qwen/Qwen3-0.6B", **kw)))


@pytest.mark.skipif(not NO_GPU, reason="checks the error shown on a machine without a GPU")
def test_cuda_device_without_gpu_is_clear():
    with pytest.raises(ConfigError, match="preset 'tiny'"):
        models.resolve_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU with unsloth installed")
def test_unsloth_accepts_the_toy_folder():
    """Offline GPU check: Unsloth loads the toy model's saved folder and adds LoRA adapters."""
    path = toy_build.build_toy_world(ToyConfig(), progress=False)
    cfg = ModelConfig(
        name_or_path=str(path),
        backend="unsloth",
        device="cuda",
        dtype="bfloat16",
        lora_rank=8,
        max_context=ToyConfig().max_position_embeddings,
    )
    model, tok = models.load_policy(_run(cfg), for_training=True, max_seq_length=128)
    assert hasattr(model, "peft_config") and tok.eos_token == toy.IM_END


def test_vllm_cpu_opt_in_reaches_the_engine(monkeypatch, cache):
    """allow_vllm_cpu lets use_vllm through the no-GPU gate; enforce_eager and max_seq_length reach
    vllm.LLM (a stand-in module: the main suite has no vLLM; tests/policy/test_vllm_cpu.py runs
    the real engine in `make test-vllm`)."""
    import sys
    import types

    made = []

    class LLM:
        def __init__(self, **kw):
            made.append(kw)

        def get_tokenizer(self):
            return "tokenizer"

    fake = types.ModuleType("vllm")
    fake.LLM = LLM
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(models, "cuda_available", lambda: False)
    model = ModelConfig(device="cpu", use_vllm=True, allow_vllm_cpu=True, enforce_eager=True)
    llm, tok = models.load_policy(_run(model, SMALL), max_seq_length=200)
    assert isinstance(llm, LLM) and tok == "tokenizer"
    assert made[0]["enforce_eager"] is True and made[0]["max_model_len"] == 200
    # Past the toy's 128 positions without a RoPE variant: vLLM's rotary cache is sized for it
    # (otherwise vLLM refuses the length, or gives NaN log-probs with VLLM_ALLOW_LONG_MAX_MODEL_LEN).
    assert made[0]["hf_overrides"] == {"max_position_embeddings": 200}
    models.load_policy(_run(model, SMALL), max_seq_length=100)
    assert "hf_overrides" not in made[1] and made[1]["max_model_len"] == 100
    plain = ModelConfig(device="auto", use_vllm=True)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        models.load_policy(_run(plain, SMALL))


GPU_PRESETS = [p for p in PRESETS if get_preset(p).model.device == "cuda"]


@pytest.mark.parametrize("name", GPU_PRESETS)
def test_gpu_presets_sample_through_vllm(name, monkeypatch):
    """Issue 12, defect 9: 01 (probe), 02 (curation) and 03's held-out check sample what
    `load_policy(cfg, checkpoint)` returns; for every GPU preset that is a vLLM engine (paper
    presets: a vllm.LLM; LoRA presets: Unsloth's fast_inference engine), never transformers'
    generate at 32K+ tokens. No GPU here: stand-in vllm/unsloth modules record what the loader
    asks for (the real vLLM engine runs in tests/policy/test_vllm_cpu.py)."""
    import sys
    import types

    calls = []

    class LLM:
        def __init__(self, **kw):
            calls.append(("vllm.LLM", kw))

        def get_tokenizer(self):
            return "tokenizer"

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kw):
            calls.append(("unsloth", kw))
            return types.SimpleNamespace(), "tokenizer"

        @staticmethod
        def for_inference(model):
            pass

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    monkeypatch.setitem(
        sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel)
    )
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    cfg = get_preset(name)
    model, _ = models.load_policy(cfg)
    (kind, kw), *_ = calls
    if cfg.model.backend == "unsloth":
        assert kind == "unsloth" and kw["fast_inference"] is True
    else:
        assert (
            kind == "vllm.LLM" and isinstance(model, LLM) and kw["model"] == cfg.model.name_or_path
        )


def _adamw_moved(model, dtype, steps: int = 1, lr: float = 1e-6) -> float:
    """Fraction of weights an AdamW step at `lr` changes, weights held in `dtype` and the forward
    under bf16 autocast (what TRL's bf16=True does on a GPU)."""
    model = model.to(dtype).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ids = torch.randint(
        0, model.config.vocab_size, (4, 24), generator=torch.Generator().manual_seed(0)
    )
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    moved = sum(
        int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before, strict=True)
    )
    return moved / sum(b.numel() for b in before)


def test_full_fine_tuning_keeps_fp32_master_weights(small_cache):
    """Full fine-tuning on a GPU loads fp32 weights (TRL's bf16 autocasts the compute): a 1e-6
    AdamW step then moves every weight, where bf16 weights round most such steps away. LoRA and
    sampling keep model.dtype; Unsloth full fine-tuning (pure bf16) is refused."""
    gpu_bf16 = ModelConfig(name_or_path="Qwen/Qwen3-0.6B", device="cuda", dtype="bfloat16")
    assert models.weights_dtype(gpu_bf16, "cuda", for_training=True) is torch.float32
    assert models.weights_dtype(gpu_bf16, "cuda", for_training=False) is torch.bfloat16
    lora = dataclasses.replace(gpu_bf16, lora_rank=16)
    assert models.weights_dtype(lora, "cuda", for_training=True) is torch.bfloat16

    model, _ = models.load_policy(_run(ModelConfig(), SMALL), for_training=True)
    dtype = models.weights_dtype(gpu_bf16, "cuda", for_training=True)
    assert _adamw_moved(model, dtype) > 0.99  # every weight with a gradient moves
    model, _ = models.load_policy(_run(ModelConfig(), SMALL), for_training=True)
    assert _adamw_moved(model, torch.bfloat16) < 0.5  # the defect: pure bf16 AdamW stalls

    with pytest.raises(ConfigError, match="fp32 master"):
        ModelConfig(name_or_path="Qwen/Qwen3-0.6B", backend="unsloth", device="cuda")


def test_unsloth_gets_the_runs_length_and_standby_mode(monkeypatch):
    """Unsloth's engine is sized to what the run needs (qwen3-4b-24gb: 1024 + 5248 = 6272, a
    stage's own length when training), not the model's 40,960, and UNSLOTH_VLLM_STANDBY=1 is set
    before unsloth is imported. Unsloth is not installed here: a stand-in module records the call
    (the real one runs in scripts/gpu_check.py on a GPU)."""
    import sys
    import types

    calls = []

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kw):
            calls.append((kw, os.environ.get("UNSLOTH_VLLM_STANDBY")))
            return types.SimpleNamespace(peft_config={}), "tokenizer"

        @staticmethod
        def for_inference(model):
            return model

    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = FastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    monkeypatch.delenv("UNSLOTH_VLLM_STANDBY", raising=False)
    cfg = get_preset("qwen3-4b-24gb")
    models.load_policy(cfg)
    kw, standby = calls[-1]
    assert kw["max_seq_length"] == 1024 + 5248 == models.sampling_context(cfg) and standby == "1"
    models.load_policy(cfg, for_training=True, max_seq_length=cfg.stage_context(1))
    assert calls[-1][0]["max_seq_length"] == 1024 + 3968
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "0")  # a user's own choice is kept
    models.load_policy(cfg)
    assert calls[-1][1] == "0"
