"""Config validation: every bad combination fails fast with a message a user can act on."""

import dataclasses
import re

import pytest

from polaris_lib.config import apply_overrides
from polaris_lib.config.presets import PRESETS, get_preset
from polaris_lib.config.sections import (
    ConfigError,
    EvalConfig,
    ModelConfig,
    ProbeConfig,
    RunConfig,
    StageConfig,
    ToyConfig,
    YarnConfig,
)


def test_group_size_must_divide_generation_batch():
    with pytest.raises(ConfigError, match="divisible by per_device_batch_size"):
        StageConfig(prompts_per_step=3, group_size=8, per_device_batch_size=16)


def test_stage_length_must_fit_context_unless_yarn():
    cfg = get_preset("qwen3-4b-paper")
    cfg.yarn.enabled = False
    with pytest.raises(ConfigError, match="exceeds the model context"):
        RunConfig.from_dict(cfg.to_dict())
    cfg.yarn.enabled = True  # the paper's 48K/52K stages exceed 40,960 positions (RECIPE §5)
    RunConfig.from_dict(cfg.to_dict())


@pytest.mark.parametrize(
    "factory, kwargs, message",
    [
        (StageConfig, {"clip_low": 0.3, "clip_high": 0.2}, "clip_high >= clip_low"),
        (StageConfig, {"group_size": 1}, "group_size must be >= 2"),
        (StageConfig, {"entropy_coef": -0.1}, "entropy_coef"),
        (ProbeConfig, {"temperatures": [1.0, 0.6]}, "ascending"),
        (ProbeConfig, {"robust_tolerance": 0.2, "collapse_drop": 0.1}, "robust_tolerance"),
        (YarnConfig, {"factor": 0.5}, "factor must be >= 1"),
        (EvalConfig, {"benchmarks": []}, "at least one benchmark"),
        (ToyConfig, {"hidden_size": 512}, "<= 256"),
        (ModelConfig, {"backend": "unsloth", "device": "cpu"}, "preset 'tiny'"),
        (ModelConfig, {"use_vllm": True, "device": "cpu"}, "CUDA GPU"),
        (ModelConfig, {"use_vllm": True, "device": "cpu", "load_in_4bit": True}, "CUDA GPU"),
        (ModelConfig, {"allow_vllm_cpu": True, "backend": "unsloth"}, "allow_vllm_cpu"),
        (ModelConfig, {"enforce_eager": "yes"}, "enforce_eager"),
    ],
)
def test_invalid_combinations_raise_actionable_errors(factory, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        factory(**kwargs)


def test_stages_must_be_numbered_in_order():
    with pytest.raises(ConfigError, match="numbered 1..N"):
        RunConfig(stages=[StageConfig(stage=2)], model=ModelConfig(name_or_path="x"))


def test_every_field_has_a_docstring():
    """STYLE.md habit 3: one line of documentation under each field (checked in the source)."""
    import ast
    import inspect

    from polaris_lib.config import sections as config

    tree = ast.parse(inspect.getsource(config))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for cls in (
        ToyConfig,
        ModelConfig,
        ProbeConfig,
        StageConfig,
        YarnConfig,
        EvalConfig,
        RunConfig,
    ):
        body = classes[cls.__name__].body
        documented = {
            stmt.target.id
            for stmt, nxt in zip(body, body[1:] + [None], strict=True)
            if isinstance(stmt, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        }
        missing = {f.name for f in dataclasses.fields(cls)} - documented
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_round_trip_to_dict():
    for name in ("tiny", "qwen3-4b-24gb", "qwen3-4b-paper"):
        cfg = get_preset(name)
        assert RunConfig.from_dict(cfg.to_dict()) == cfg


# --- issue 13: types and ranges are checked while the config resolves -----------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ({"stages.0.learning_rate": "1e-4x"}, "learning_rate must be a finite number, got '1e-4x'"),
        ({"stages.*.max_steps": 2.5}, "max_steps must be a whole number, got 2.5"),
        ({"seed": float("nan")}, "seed must be a whole number, got nan"),
        ({"stages.0.prompts_per_step": 0}, "prompts_per_step must be >= 1"),
        ({"probe.n_problems": float("inf")}, "n_problems must be a whole number, got inf"),
        ({"stages.1.max_completion_length": -5}, "max_completion_length must be >= 1"),
        ({"stages.0.learning_rate": float("inf")}, "learning_rate must be a finite number"),
        ({"eval.benchmarks": "aime24"}, "benchmarks must be a list of a string"),
        ({"model.thinking": "yes"}, "thinking must be true or false"),
        ({"model.backend": "vllm"}, "backend must be one of 'transformers', 'unsloth'"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"eval.checkpoints": ["base", "stage7"]}, "checkpoint 'stage7' does not exist"),
        ({"stages": 3}, "stages is a list of stage sections, not 3"),
        ({"model": 3}, "model is a section of fields"),
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"model.name_or_path": "a\nb"}, "must not contain control characters"),
    ],
)
def test_mistyped_or_out_of_range_override_is_a_config_error(override, message):
    """Issue 13 items 1 and 8: each of these was accepted (or raised a raw TypeError) before."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(get_preset("tiny"), override)


def test_every_preset_passes_the_type_checks():
    for name in PRESETS:
        cfg = get_preset(name)
        assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_vllm_cpu_lane_is_an_explicit_opt_in():
    """use_vllm on a CPU device passes validation only with allow_vllm_cpu (the vLLM CPU lane)."""
    m = ModelConfig(use_vllm=True, device="cpu", allow_vllm_cpu=True, enforce_eager=True)
    assert m.use_vllm and m.enforce_eager and ModelConfig().enforce_eager is False
