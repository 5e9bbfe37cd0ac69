"""Load the policy for any preset: the kit's toy model, a transformers model, or Unsloth (GPU).

`load_policy(model_cfg, ...)` -> (model, tokenizer):
- ``name_or_path="toy"``: build (or reuse from the cache) the toy world, load it from its folder
  with ``AutoModelForCausalLM`` on CPU in float32 — the same code path as a hub checkpoint.
- a hub id or a local folder with backend ``transformers``: plain ``AutoModelForCausalLM``.
- backend ``unsloth`` (GPU only): ``FastLanguageModel.from_pretrained`` + ``get_peft_model`` (LoRA),
  optionally 4-bit and with ``fast_inference=True`` (colocated vLLM).
Unsloth must be imported before trl/transformers/peft: it patches their classes at import time,
and a class imported earlier keeps the unpatched code (Unsloth warns and loses its speed-ups or
its GRPO/vLLM integration). `import_unsloth_first()` is called by entry points that may use it.
"""

from __future__ import annotations

import sys

from polaris_lib.config.sections import ConfigError, ModelConfig, ToyConfig, YarnConfig

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
            ("use_vllm=True", model_cfg.use_vllm),
            ("load_in_4bit=True", model_cfg.load_in_4bit),
        ]
        if on
    ]
    if gpu_only and not cuda_available():
        raise ConfigError(
            f"model: {', '.join(gpu_only)} needs a CUDA GPU and none is visible; "
            "on a CPU machine use preset 'tiny'"
        )


def import_unsloth_first() -> None:
    """Import unsloth before trl/transformers/peft so its patches apply (warns if too late)."""
    late = [m for m in ("trl", "transformers", "peft") if m in sys.modules]
    if late and "unsloth" not in sys.modules:
        import warnings

        warnings.warn(
            f"unsloth is imported after {', '.join(late)}; import polaris_lib.policy.load and call "
            "import_unsloth_first() at the top of the notebook for Unsloth's patches to apply",
            stacklevel=2,
        )
    import unsloth  # noqa: F401


def load_policy(
    model_cfg: ModelConfig,
    *,
    toy_cfg: ToyConfig | None = None,
    checkpoint: str | None = None,
    yarn: YarnConfig | None = None,
    for_training: bool = False,
    max_seq_length: int | None = None,
):
    """(model, tokenizer) for `model_cfg`; `checkpoint` (a saved stage folder) overrides the path.

    `yarn` applies YaRN to the RoPE settings (polaris_lib.policy.rope). `for_training` leaves the model
    in train mode (and, for Unsloth, adds LoRA adapters). `max_seq_length` (Unsloth) should be the
    longest stage's prompt + completion length; defaults to model_cfg.max_context.
    """
    _require_gpu(model_cfg)
    if model_cfg.backend == "unsloth":
        return _load_unsloth(model_cfg, checkpoint, yarn, for_training, max_seq_length)
    path = checkpoint or model_cfg.name_or_path
    if path == "toy":
        if toy_cfg is None:
            raise ConfigError("model: name_or_path 'toy' needs a ToyConfig (use preset 'tiny')")
        from polaris_lib.toy.build import build_toy_world

        path = str(build_toy_world(toy_cfg))
    return _load_transformers(model_cfg, path, yarn, for_training)


def _torch_dtype(model_cfg: ModelConfig, device: str):
    import torch

    if device == "cpu":
        return torch.float32  # bf16 gives no speed-up on CPU and hurts a tiny model's precision
    return getattr(torch, model_cfg.dtype)


def _load_transformers(model_cfg: ModelConfig, path: str, yarn, for_training: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(model_cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    kwargs = {"dtype": _torch_dtype(model_cfg, device)}
    if yarn is not None and yarn.enabled:
        from polaris_lib.policy.rope import apply_yarn

        kwargs["config"] = apply_yarn(path, yarn)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device)
    if tokenizer.pad_token is None:  # some hub tokenizers ship none; batched generate needs one
        tokenizer.pad_token = tokenizer.eos_token
    model.train(for_training)
    return model, tokenizer


def _load_unsloth(model_cfg: ModelConfig, checkpoint, yarn, for_training: bool, max_seq_length):
    import_unsloth_first()
    from unsloth import FastLanguageModel

    path = checkpoint or model_cfg.name_or_path
    if path == "toy":
        raise ConfigError(
            "model: backend 'unsloth' needs a model folder or hub id; for the toy model pass "
            "checkpoint=str(polaris_lib.toy.build.build_toy_world(cfg)) (its saved folder)"
        )
    kwargs = dict(
        model_name=str(path),
        max_seq_length=max_seq_length or model_cfg.max_context,
        load_in_4bit=model_cfg.load_in_4bit,
        fast_inference=model_cfg.use_vllm,
        max_lora_rank=model_cfg.lora_rank or None,
        gpu_memory_utilization=model_cfg.gpu_memory_utilization,
        dtype=None if model_cfg.dtype == "float32" else _torch_dtype(model_cfg, "cuda"),
    )
    if yarn is not None and yarn.enabled:
        from polaris_lib.policy.rope import apply_yarn

        kwargs["rope_scaling"] = apply_yarn(path, yarn).rope_parameters
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
    return model, tokenizer


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")
