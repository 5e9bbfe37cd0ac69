"""The weight-sync canary around TRL's colocated vLLM sync (a stand-in engine: no vLLM here;
tests/training/test_vllm_colocate.py runs the real one in `make test-vllm`)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
import torch
from tiny_model import random_qwen3

from polaris_lib.training import vllm_sync


def _trainer(model, tok, sync):
    vg = NS(mode="colocate", sync_weights=sync, llm="engine")
    return NS(vllm_generation=vg, model=model, processing_class=tok, state=NS(global_step=3))


def test_canary_passes_a_real_sync_and_stops_a_stale_engine(monkeypatch):
    model, tok = random_qwen3()
    stale, _ = random_qwen3()
    with torch.no_grad():
        for p in stale.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the engine still holds "old" weights
    engine = {"model": model}
    monkeypatch.setattr(
        vllm_sync,
        "engine_logprobs",
        lambda llm, ids: vllm_sync.policy_logprobs(engine["model"], ids),
    )
    calls = []
    tr = _trainer(model, tok, lambda: calls.append("trl sync"))
    guard = vllm_sync.install_weight_sync_guard(tr, shim=False)
    assert guard is not None and guard.tol == 1e-3 and len(guard.ids) == vllm_sync.PROBE_LEN
    tr.vllm_generation.sync_weights()
    assert calls == ["trl sync"] and guard.diffs == [0.0]
    engine["model"] = stale  # a sync that silently did nothing
    with pytest.raises(vllm_sync.WeightSyncError, match="at step 3.*stale policy"):
        tr.vllm_generation.sync_weights()


def test_guard_only_for_a_colocated_engine():
    model, tok = random_qwen3()
    assert vllm_sync.install_weight_sync_guard(NS(model=model)) is None
    server = NS(vllm_generation=NS(mode="server"), model=model)
    assert vllm_sync.install_weight_sync_guard(server) is None
    assert vllm_sync.probe_ids(50) == vllm_sync.probe_ids(50)  # fixed probe
    assert vllm_sync.default_tolerance(torch.bfloat16) > vllm_sync.default_tolerance(torch.float32)
