"""PolarisGRPOTrainer with TRL's colocated vLLM engine, 2 steps on the toy model (vLLM CPU lane,
`make test-vllm`; on CPU the sync goes through the CPU-only shim of training/vllm_sync.py and every
sync is checked by the weight-sync canary)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from polaris_lib.config.sections import ToyConfig

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; the vLLM CPU lane runs this (make test-vllm)",
    ),
]

TOY = ToyConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, warmstart_steps=2)


def _parity_reward(prompts, completions, completion_ids=None, **kw):
    return [float(sum(ids) % 2 == 0) for ids in completion_ids]


def test_colocated_vllm_trains_two_steps_with_checked_syncs(tmp_path, monkeypatch):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from polaris_lib.toy.build import build_toy_world
    from polaris_lib.training.stage import release_trainer
    from polaris_lib.training.trainer import PolarisGRPOTrainer, PolarisOptions
    from polaris_lib.training.vllm_sync import WeightSyncError, check_weight_sync

    monkeypatch.setenv("POLARIS_CACHE", str(tmp_path / "cache"))
    if not torch.cuda.is_available():
        monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
        monkeypatch.setenv("VLLM_CPU_CI_ENV", "1")  # eager: TRL builds this engine, not the kit
    path = build_toy_world(TOY, progress=False, eval_per_difficulty=1)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    rows = [
        dict(
            prompt=[{"role": "user", "content": f"{i}+{i}"}], answer=str(2 * i), problem_id=f"p{i}"
        )
        for i in range(4)
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        num_generations=4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        steps_per_generation=2,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        loss_type="dapo",
        beta=0.0,
        gradient_checkpointing=False,
        remove_unused_columns=False,
        disable_dropout=True,
        seed=0,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.2,
        vllm_max_model_length=TOY.max_position_embeddings,
    )
    tr = PolarisGRPOTrainer(
        model=model,
        reward_funcs=_parity_reward,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        polaris=PolarisOptions(min_mixed_fraction=0.01),
        reward_log_path=tmp_path / "reward_log.jsonl",
    )
    guard = tr.weight_sync_guard
    try:
        assert guard is not None and guard.shim == (not torch.cuda.is_available())
        before = [p.detach().clone() for p in tr.model.parameters()]
        tr.train()
        assert tr.state.global_step == 2
        moved = sum(
            (a - b).abs().sum().item() for a, b in zip(before, tr.model.parameters(), strict=True)
        )
        assert moved > 0
        # One sync per generation batch (steps 0 and 1); the second one carries trained weights.
        assert len(guard.diffs) == 2 and max(guard.diffs) <= guard.tol, guard.diffs
        print(f"\n[colocate] canary max |dlogp| per sync: {guard.diffs} (tol {guard.tol})")
        # A stale engine is caught: move the policy without syncing.
        with torch.no_grad():
            for p in tr.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        with pytest.raises(WeightSyncError, match="stale policy"):
            check_weight_sync(tr.vllm_generation.llm, tr.model, guard.ids, guard.tol)
    finally:
        # What train_stage does before notebook 03's held-out check loads its two policies.
        steps = release_trainer(tr)
    # TRL's colocated engine runs in this process (external launcher): it was shut down and the
    # trainer holds no reference to it any more.
    assert any(s.endswith("shutdown") for s in steps) and "dropped" in steps, steps
    assert tr.vllm_generation.llm is None
