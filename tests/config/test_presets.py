"""Presets carry the paper's numbers; the GRPOConfig adapter sets every algorithm field."""

import dataclasses

import pytest

from polaris_lib.config.overrides import apply_overrides, resolve
from polaris_lib.config.presets import HARD_TOY, PRESETS, QWEN3_4B_RESPONSE, get_preset
from polaris_lib.config.sections import ConfigError
from polaris_lib.curate import pool_problems
from polaris_lib.training.grpo_config import grpo_kwargs, to_grpo_config

ALGORITHM_FIELDS = {
    "beta",
    "epsilon",
    "epsilon_high",
    "loss_type",
    "num_generations",
    "temperature",
    "top_p",
    "top_k",
    "max_completion_length",
    "mask_truncated_completions",
    "learning_rate",
    "lr_scheduler_type",
    "entropy_coef",
    "num_iterations",
    "scale_rewards",
    "weight_decay",
    "max_grad_norm",
    "steps_per_generation",
    "gradient_accumulation_steps",
}


def test_paper_preset_has_the_papers_values():
    cfg = get_preset("qwen3-4b-paper")
    assert [s.temperature for s in cfg.stages] == [1.4, 1.45, 1.5]
    assert [s.max_completion_length for s in cfg.stages] == list(QWEN3_4B_RESPONSE)
    assert QWEN3_4B_RESPONSE[0] + 1024 == 40960  # "40K total (39,936 response)"
    for s in cfg.stages:
        assert (s.group_size, s.prompts_per_step, s.learning_rate) == (8, 128, 1e-6)
        assert (s.clip_low, s.clip_high, s.kl_beta, s.entropy_coef) == (0.2, 0.28, 0.0, 0.0)
        assert s.loss_type == "bnpo" and s.lr_scheduler == "constant" and s.top_k == 0  # verl's
    assert cfg.eval.top_k == 20 and cfg.eval.temperature == 1.4
    assert (cfg.yarn.factor, cfg.yarn.attention_factor) == (1.5, 1.0)
    r1 = get_preset("r1-distill-7b-paper")
    assert [s.temperature for s in r1.stages] == [0.7, 1.0, 1.1]


def test_consumer_presets_scale_every_length_by_one_ratio():
    for name in ("qwen3-0.6b-24gb", "qwen3-1.7b-24gb", "qwen3-4b-24gb"):
        cfg = get_preset(name)
        ratios = [
            s.max_completion_length / p for s, p in zip(cfg.stages, QWEN3_4B_RESPONSE, strict=True)
        ]
        assert max(ratios) - min(ratios) < 0.01, (name, ratios)
        assert cfg.model.backend == "unsloth" and cfg.model.lora_rank > 0


def test_every_preset_builds_and_validates():
    for name in PRESETS:
        cfg = get_preset(name)
        assert cfg.preset == name
        for k in range(1, len(cfg.stages) + 1):
            kw = grpo_kwargs(cfg, k, 1.0, "/tmp/x")
            assert kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"] == (
                cfg.stage(k).rollouts_per_step
            )


def test_adapter_sets_every_algorithm_field_explicitly():
    kw = grpo_kwargs(get_preset("qwen3-4b-paper"), 2, 1.45, "/tmp/x")
    assert ALGORITHM_FIELDS <= set(kw)
    assert kw["epsilon"] == 0.2 and kw["epsilon_high"] == 0.28 and kw["beta"] == 0.0
    assert kw["temperature"] == 1.45 and kw["max_completion_length"] == 48128


def test_adapter_names_exist_in_installed_trl():
    """API drift: a name we pass that TRL renamed or removed fails here, not mid-training."""
    from trl import GRPOConfig

    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    for preset in ("tiny", "qwen3-4b-paper"):
        missing = set(grpo_kwargs(get_preset(preset), 1, 1.0, "/tmp/x")) - names
        assert not missing, f"GRPOConfig no longer has {missing}"


def test_to_grpo_config_builds_a_real_config(tmp_path):
    args = to_grpo_config(get_preset("tiny"), 1, 0.9, str(tmp_path))
    assert args.temperature == 0.9 and args.use_cpu and not args.bf16
    assert args.generation_batch_size == get_preset("tiny").stage(1).rollouts_per_step
    with pytest.raises(ConfigError, match="no field"):
        to_grpo_config(get_preset("tiny"), 1, 0.9, str(tmp_path), not_a_field=1)


def test_overrides_and_notebook_parameters():
    cfg = apply_overrides(get_preset("tiny"), {"stages.*.max_steps": 3, "probe.n_samples": 4})
    assert [s.max_steps for s in cfg.stages] == [3, 3, 3] and cfg.probe.n_samples == 4
    with pytest.raises(ConfigError, match="no field 'nope'"):
        apply_overrides(get_preset("tiny"), {"probe.nope": 1})
    with pytest.raises(ConfigError, match="stage index"):
        apply_overrides(get_preset("tiny"), {"stages.7.max_steps": 1})
    with pytest.raises(ConfigError, match="ascending"):  # overrides are re-validated
        apply_overrides(get_preset("tiny"), {"probe.temperatures": [1.0, 0.5]})
    cfg = resolve("tiny", {}, section="probe", SEED=5, OVERRIDE_TEMPERATURE=1.1, STAGE=2)
    assert cfg.seed == 5 and cfg.probe.override_temperature == 1.1
    with pytest.raises(ConfigError, match="not a config field"):
        resolve("tiny", section="probe", BOGUS=1)


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match="qwen3-4b-paper"):
        get_preset("qwen3-8b")


def test_consumer_presets_fit_24gb_by_the_planner():
    """The consumer presets were sized with `polaris plan`; a change that breaks the fit fails."""
    from polaris_lib.scale_out.plan import plan_run

    for name in ("qwen3-0.6b-24gb", "qwen3-1.7b-24gb", "qwen3-4b-24gb"):
        table = plan_run(get_preset(name), 24)
        assert table["fits"].all(), (name, table[["stage", "total_gb"]].to_dict("records"))


def test_run_dir_is_the_same_folder_from_jupyterlab_and_papermill(monkeypatch):
    """JupyterLab's kernel starts in notebooks/, papermill in the project root: RUN_DIR means
    one folder in both, so a user can step through the run `make demo` made."""
    from polaris_lib.config import PROJECT_ROOT, resolve

    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    from_lab = resolve("tiny", {}, RUN_DIR="reports/demo").run_dir
    monkeypatch.chdir(PROJECT_ROOT)
    from_runner = resolve("tiny", {}, RUN_DIR="reports/demo").run_dir
    assert from_lab == from_runner == str(PROJECT_ROOT / "reports" / "demo")
    assert resolve("tiny", {}, RUN_DIR="/tmp/elsewhere").run_dir == "/tmp/elsewhere"


def test_every_vllm_importance_sampling_key_is_set_and_off_by_default():
    """TRL 1.15 defaults the correction on (sequence_mask, cap 3.0) and Unsloth off: the kit sets
    every vllm_importance_sampling_* field of the installed GRPOConfig itself, off by default (the
    authors' verl has none, RECIPE §3), so consumer and paper presets train the same loss."""
    from trl import GRPOConfig

    keys = {f.name for f in dataclasses.fields(GRPOConfig)}
    keys = {k for k in keys if k.startswith("vllm_importance_sampling")}
    assert len(keys) >= 4, keys  # correction, mode, clip_max, clip_min (+ deprecated cap)
    for preset in ("tiny", "qwen3-4b-24gb", "qwen3-4b-paper"):
        kw = grpo_kwargs(get_preset(preset), 1, 1.0, "/tmp/x")
        assert keys <= set(kw), keys - set(kw)
        assert kw["vllm_importance_sampling_correction"] is False
    on = apply_overrides(  # a real GRPOConfig takes them (tiny: this machine has no bf16 GPU)
        get_preset("tiny"),
        {"stages.0.vllm_is_correction": True, "stages.0.vllm_is_mode": "token_mask"},
    )
    args = to_grpo_config(on, 1, 1.4, "/tmp/x")
    assert args.vllm_importance_sampling_correction is True
    assert args.vllm_importance_sampling_mode == "token_mask"
    assert args.vllm_importance_sampling_clip_max == 3.0
    with pytest.raises(ConfigError, match="vllm_is_clip_min"):
        apply_overrides(get_preset("tiny"), {"stages.0.vllm_is_clip_min": 5.0})


def test_trls_engine_is_sized_to_the_stage():
    """vllm_max_model_length is the stage's prompt + response budget, not the model's context."""
    cfg = get_preset("qwen3-4b-24gb")
    for k in (1, 2, 3):
        kw = grpo_kwargs(cfg, k, 1.0, "/tmp/x")
        st = cfg.stage(k)
        assert kw["vllm_max_model_length"] == st.max_prompt_length + st.max_completion_length
    assert grpo_kwargs(get_preset("qwen3-4b-paper"), 3, 1.5, "/tmp/x")["vllm_max_model_length"] == (
        1024 + 52224
    )


def test_every_length_fits_or_fails_with_the_fix():
    """Paper stages 2-3 (49,152 / 53,248 tokens) pass Qwen3's 40,960 positions: they train with
    YaRN; a length YaRN cannot hold, or one without YaRN, fails naming the fix."""
    paper = get_preset("qwen3-4b-paper")
    assert [paper.stage_rope(k) for k in (1, 2, 3)] == ["none", "yarn", "yarn"]
    for name in PRESETS:  # every preset's lengths fit as shipped
        cfg = get_preset(name)
        for k in range(1, len(cfg.stages) + 1):
            assert cfg.stage_context(k) <= (
                cfg.model.max_context if cfg.stage_rope(k) == "none" else cfg.yarn.context
            )
    with pytest.raises(ConfigError, match=r"yarn.in_training=True"):
        apply_overrides(paper, {"yarn.in_training": False})
    with pytest.raises(ConfigError, match=r"yarn.max_context >= 53248"):
        apply_overrides(paper, {"yarn.max_context": 49152})
    with pytest.raises(ConfigError, match=r"set curation.max_new_tokens <= 39936"):
        apply_overrides(paper, {"curation.max_new_tokens": 45000})
    with pytest.raises(ConfigError, match=r"eval.max_new_tokens <= 97280"):
        apply_overrides(paper, {"eval.max_new_tokens": 100000})
    with pytest.raises(ConfigError, match=r"enable YaRN"):
        apply_overrides(paper, {"yarn.enabled": False})


def test_paper_preset_values_follow_the_authors_or_are_marked_as_the_kits():
    """Issue 14 item 6: every paper-preset value has a RECIPE source or says it is the kit's."""
    import inspect

    from polaris_lib.config import presets

    for name in ("qwen3-4b-paper", "qwen3-1.7b-paper", "r1-distill-7b-paper"):
        cfg = get_preset(name)
        assert cfg.probe.max_new_tokens == 50000  # RECIPE §1: the authors' probe script
        assert cfg.curation.max_new_tokens == cfg.stages[0].max_completion_length  # kit's choice
        assert cfg.eval.max_new_tokens == 90000  # RECIPE §7
        # RECIPE §7: never evaluate above the final training temperature.
        assert cfg.eval.temperature <= cfg.stages[-1].temperature
    assert get_preset("qwen3-1.7b-paper").eval.temperature == 1.4  # RECIPE §7 validation table
    assert get_preset("r1-distill-7b-paper").eval.temperature == 0.8
    assert [s.max_steps for s in get_preset("qwen3-1.7b-paper").stages] == [450, 150]
    src = inspect.getsource(presets)
    assert src.count("Kit's choice") >= 2  # the 1.7B boundary and the curation length


def test_consumer_presets_train_on_the_recipes_pool_not_a_test_set():
    for name in ("qwen3-0.6b-24gb", "qwen3-1.7b-24gb", "qwen3-4b-24gb"):
        assert get_preset(name).curation.pool == "polaris53k"


def test_tiny_hard_is_the_toy_in_polaris_regime_at_tinys_budget():
    """Same task, model and step budget as tiny; a harder warm start; stage 1 truncates long work;
    probe and curation at stage 1's length (as the authors)."""
    tiny, hard = get_preset("tiny"), get_preset("tiny-hard")
    assert hard.toy == HARD_TOY and hard.toy != tiny.toy
    assert (hard.toy.hidden_size, hard.toy.max_terms) == (tiny.toy.hidden_size, tiny.toy.max_terms)
    assert [s.max_steps for s in hard.stages] == [s.max_steps for s in tiny.stages]
    lengths = [s.max_completion_length for s in hard.stages]
    assert lengths == sorted(lengths) and lengths[0] < min(
        s.max_completion_length for s in tiny.stages
    )
    assert hard.probe.max_new_tokens == hard.curation.max_new_tokens == lengths[0]
    assert set(pool_problems(hard).difficulty) == {5, 6, 7, 8}  # the long sums only
    assert set(pool_problems(tiny).difficulty) == set(range(2, 9))
    with pytest.raises(ConfigError, match="toy_terms"):
        apply_overrides(tiny, {"curation.toy_terms": [5, 3]})
