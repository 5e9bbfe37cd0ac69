"""Training-free length extrapolation (RECIPE.md §6): YaRN and linear interpolation, for
transformers and vLLM.

In transformers 5 the RoPE settings of a model live in ``config.rope_parameters`` — a dict holding
``rope_type`` *and* ``rope_theta``. Replacing it with a YaRN dict that forgets ``rope_theta``
silently drops Qwen3's base of 1e6, so every function here copies the model's own theta across.
The paper's settings: factor 1.5 over the 32K pre-training context, ``attention_factor`` 1.0
(YaRN's attention temperature turned off; it hurt long reasoning).

What YaRN does to a model, worth knowing when reading results: it rescales the *low-frequency*
rotary dimensions by 1/factor at every position, so logits change a little even inside the
original context (and are unchanged only at the first position, whose rotation is zero);
high-frequency dimensions are left as they are. Linear position interpolation (every position
divided by the factor) is the baseline YaRN improves on; notebook 04 compares the three variants.
"""

from __future__ import annotations

import copy
from pathlib import Path

from polaris_lib.config.sections import YarnConfig


def _rope_params(config) -> dict:
    params = getattr(config, "rope_parameters", None)
    if params is None:  # transformers 4 style configs
        scaling = getattr(config, "rope_scaling", None) or {}
        params = {**scaling, "rope_theta": getattr(config, "rope_theta", None)}
    if "rope_type" not in params and isinstance(next(iter(params.values()), None), dict):
        raise ValueError("per-layer-type rope_parameters (e.g. Gemma) are not supported by the kit")
    return dict(params)


def yarn_rope_parameters(config, yarn: YarnConfig) -> dict:
    """The ``rope_parameters`` dict that turns on YaRN for `config`, keeping its rope_theta.

    >>> from transformers import Qwen3Config
    >>> yarn_rope_parameters(Qwen3Config(rope_parameters={"rope_type": "default",
    ...     "rope_theta": 1e6}), YarnConfig())["rope_theta"]
    1000000.0
    """
    old = _rope_params(config)
    theta = old.get("rope_theta")
    if theta is None:
        raise ValueError(
            "the model config has no rope_theta; refusing to build YaRN settings without it "
            "(it would fall back to a default base and change the model)"
        )
    params = {
        "rope_type": "yarn",
        "factor": float(yarn.factor),
        "original_max_position_embeddings": int(yarn.original_max_position_embeddings),
        "attention_factor": float(yarn.attention_factor),
        "rope_theta": float(theta),
    }
    if "partial_rotary_factor" in old:
        params["partial_rotary_factor"] = old["partial_rotary_factor"]
    return params


def yarn_max_length(yarn: YarnConfig) -> int:
    """Context length YaRN runs at: yarn.max_context when set, else original positions x factor.

    The authors keep factor 1.5 and evaluate at 96K context (RECIPE §6-7), past 1.5 x 32K: the
    frequencies come from the factor and the original positions, and the context only sets how
    many positions exist (transformers computes the rotation for any position; vLLM sizes its
    YaRN cos/sin cache by max(original x factor, max_position_embeddings), so the override of
    max_position_embeddings below is what lets an engine run there)."""
    return yarn.context


def apply_yarn(config_or_model_path, yarn: YarnConfig):
    """A new config with YaRN on, for ``from_pretrained(path, config=...)``; input is not modified."""
    if isinstance(config_or_model_path, (str, Path)):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(config_or_model_path))
    else:
        config = copy.deepcopy(config_or_model_path)
    config.rope_parameters = yarn_rope_parameters(config, yarn)
    config.max_position_embeddings = max(config.max_position_embeddings, yarn_max_length(yarn))
    return config


def vllm_hf_overrides(config, yarn: YarnConfig) -> dict:
    """vLLM ``LLM(hf_overrides=...)`` value that turns on YaRN (pass ``max_model_len`` with it:
    see `vllm_yarn_kwargs`)."""
    return {
        "rope_parameters": yarn_rope_parameters(config, yarn),
        "max_position_embeddings": max(config.max_position_embeddings, yarn_max_length(yarn)),
    }


def vllm_yarn_kwargs(config, yarn: YarnConfig) -> dict:
    """Keyword arguments for ``vllm.LLM(...)``: hf_overrides plus the extended max_model_len."""
    return {"hf_overrides": vllm_hf_overrides(config, yarn), "max_model_len": yarn_max_length(yarn)}


VARIANTS = ("none", "yarn", "linear")
"""RoPE variants a policy can be loaded with: as trained, YaRN, linear position interpolation."""


def linear_rope_parameters(config, factor: float) -> dict:
    """Position interpolation (rope_type 'linear'): positions / factor, the model's theta kept."""
    old = _rope_params(config)
    if old.get("rope_theta") is None:
        raise ValueError("the model config has no rope_theta; cannot build linear RoPE settings")
    return {"rope_type": "linear", "factor": float(factor), "rope_theta": float(old["rope_theta"])}


def linear_vllm_kwargs(config, yarn: YarnConfig) -> dict:
    """vllm.LLM keywords for linear interpolation, the same extended context as YaRN's."""
    longest = max(config.max_position_embeddings, yarn_max_length(yarn))
    overrides = {
        "rope_parameters": linear_rope_parameters(config, yarn.factor),
        "max_position_embeddings": longest,
    }
    return {"hf_overrides": overrides, "max_model_len": yarn_max_length(yarn)}


def check_variant(variant: str) -> str:
    """`variant` if it is one of VARIANTS, else a ValueError naming them."""
    if variant not in VARIANTS:
        raise ValueError(f"RoPE variant {variant!r}: choose one of {VARIANTS}")
    return variant


def scaled_config(config, yarn: YarnConfig, variant: str):
    """A copy of `config` with `variant`'s RoPE settings (None for 'none'); input not modified.

    YaRN also extends max_position_embeddings (apply_yarn); linear keeps it, as the baseline.
    """
    if check_variant(variant) == "none":
        return None
    if variant == "yarn":
        return apply_yarn(config, yarn)
    scaled = copy.deepcopy(config)
    scaled.rope_parameters = linear_rope_parameters(config, yarn.factor)
    return scaled


def vllm_rope_kwargs(config, yarn: YarnConfig, variant: str) -> dict:
    """vllm.LLM keywords for `variant` ({} for 'none')."""
    if check_variant(variant) == "none":
        return {}
    return vllm_yarn_kwargs(config, yarn) if variant == "yarn" else linear_vllm_kwargs(config, yarn)


def rope_type(model) -> str | None:
    """The RoPE type the loaded model runs with, read from ``model.config`` (transformers 5
    ``rope_parameters``, or a transformers 4 style ``rope_scaling``): the one place every loader
    records it. Unsloth's own rotary modules carry no ``rope_type`` attribute."""
    config = model.config
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return params.get("rope_type") or params.get("type")


def yarn_applied(model) -> bool:
    """True when the loaded model's config says YaRN and no rotary module says otherwise.

    The type comes from ``model.config`` (`rope_type`); a rotary module that declares its own
    ``rope_type`` (transformers') must agree, one that declares none (Unsloth's) is not asked.
    Whether the scaling reached the frequencies is `extrapolate.rope_check`'s inv_freq column."""
    if rope_type(model) != "yarn":
        return False
    rotary = [m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding")]
    return all(getattr(m, "rope_type", "yarn") == "yarn" for m in rotary)
