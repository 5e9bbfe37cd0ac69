"""Memory planner: formulas against hand arithmetic, real model classes and Unsloth's published figures."""

from __future__ import annotations

import dataclasses

import pytest

from polaris_lib.scale_out import memory as memory_estimate
from polaris_lib.scale_out import plan
from polaris_lib.scale_out.memory import GIB, MODEL_SPECS, ModelSpec, TrainSetup, estimate

QWEN3_4B = MODEL_SPECS["Qwen/Qwen3-4B"]
# Llama-3.1-8B (meta-llama/Llama-3.1-8B config.json): only used for Unsloth's published breakdown.
LLAMA31_8B = ModelSpec("llama-3.1-8b", 32, 4096, 14336, 32, 8, 128, 128256, False, qk_norm=False)


def test_qwen3_0p6b_params_by_hand():
    # per layer: q 1024*2048 + k,v 2*1024*1024 + o 2048*1024 + gate/up/down 3*1024*3072
    linears = 2_097_152 + 2 * 1_048_576 + 2_097_152 + 9_437_184  # = 15,728,640
    small = 2 * 1024 + 2 * 128  # two RMSNorms + q_norm, k_norm
    total = 28 * (linears + small) + 151_936 * 1024 + 1024  # tied embedding + final norm
    assert total == 596_049_920
    assert MODEL_SPECS["Qwen/Qwen3-0.6B"].params == total


def test_param_counts_match_the_model_cards():
    # Model cards: Qwen3-0.6B 0.6B (0.44B non-embedding), 1.7B (1.4B), 4B 4.0B (3.6B);
    # DeepSeek-R1-Distill-Qwen-7B is Qwen2.5-Math-7B: 7.6B (6.5B non-embedding).
    cards = {
        "Qwen/Qwen3-0.6B": (0.6, 0.44),
        "Qwen/Qwen3-1.7B": (1.7, 1.4),
        "Qwen/Qwen3-4B": (4.0, 3.6),
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": (7.6, 6.5),
    }
    for name, (total_b, non_emb_b) in cards.items():
        s = MODEL_SPECS[name]
        assert s.params / 1e9 == pytest.approx(total_b, abs=0.05), name
        assert (s.params - s.embedding_params) / 1e9 == pytest.approx(non_emb_b, abs=0.05), name


@pytest.mark.slow
def test_param_and_lora_counts_match_transformers_and_peft():
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    for s in MODEL_SPECS.values():
        kw = dict(
            vocab_size=s.vocab,
            hidden_size=s.hidden,
            intermediate_size=s.intermediate,
            num_hidden_layers=s.n_layers,
            num_attention_heads=s.n_heads,
            num_key_value_heads=s.n_kv_heads,
            tie_word_embeddings=s.tied_embeddings,
        )
        qwen3 = s.qk_norm
        cfg = Qwen3Config(head_dim=s.head_dim, **kw) if qwen3 else Qwen2Config(**kw)
        with torch.device("meta"):  # shapes only, no memory
            model = (Qwen3ForCausalLM if qwen3 else Qwen2ForCausalLM)(cfg)
        assert sum(p.numel() for p in model.parameters()) == s.params, s.name
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, target_modules=targets))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == s.lora_params(16)


def test_lora_params_by_hand():
    # Qwen3-4B, r=32: per layer r*(in+out) over q (2560+4096)*2... written out:
    per_layer = (
        (2560 + 4096) * 2 + (2560 + 1024) * 2 + (2560 + 9728) * 3
    )  # q,o + k,v + gate,up,down
    assert per_layer == 57_344
    assert QWEN3_4B.lora_params(32) == 36 * 32 * 57_344 == 66_060_288


def test_weight_bytes_bf16_and_nf4_by_hand():
    linear = 36 * (2560 * 4096 + 2 * 2560 * 1024 + 4096 * 2560 + 3 * 2560 * 9728)
    assert linear == 3_633_315_840
    rest = 4_022_468_096 - linear  # embeddings + norms stay bf16
    assert memory_estimate.weight_bytes(QWEN3_4B, False) == 2 * 4_022_468_096
    nf4 = (4 + 8 / 64 + 32 / (64 * 256)) / 8  # = 0.515869140625 bytes per weight
    assert memory_estimate.weight_bytes(QWEN3_4B, True) == pytest.approx(linear * nf4 + rest * 2)


def test_activation_bytes_by_hand():
    s = TrainSetup(
        prompt_len=200, completion_len=800, group_size=8, rollouts_per_step=8, micro_batch_rows=1
    )
    ckpt = 36 * 1000 * 2560 * 2  # every layer's input, bf16
    one_layer = 1000 * 2 * 2 * (4 * 2560 + 2 * 4096 + 2 * 1024 + 3 * 9728)  # acts + grads, bf16
    assert memory_estimate.activation_bytes(QWEN3_4B, s) == ckpt + one_layer == 382_976_000
    off = dataclasses.replace(s, offload_checkpoints=True)  # only ~2 layer inputs stay on GPU
    assert memory_estimate.activation_bytes(QWEN3_4B, off) == 2 * 1000 * 2560 * 2 + one_layer
    no_gc = dataclasses.replace(s, gradient_checkpointing=False)
    assert memory_estimate.activation_bytes(QWEN3_4B, no_gc) == 36 * one_layer


def test_unsloth_published_grpo_breakdown():
    # Unsloth, "Long-context GRPO" (unsloth.ai/blog/grpo, 20 Feb 2025), Llama 3.1 8B, 20K context,
    # 8 generations: "Inference KV Cache for 20K context 2.5GB", "GRPO Memory Cost" 78.3 GB for
    # TRL + FA2 and 9.8 GB for Unsloth. Read as GiB with 20K = 20,480 tokens, the KV figure is one
    # sequence and the GRPO figures are fp32 completion logits for 8 rows vs 1 row at a time.
    s = TrainSetup(
        prompt_len=0, completion_len=20_480, group_size=1, rollouts_per_step=8, micro_batch_rows=8
    )
    trl = estimate(LLAMA31_8B, s, 80)
    assert trl.kv_cache == pytest.approx(2.5, abs=0.05)  # 2*32*8*128*2 B * 20480 = 2.5 GiB exactly
    assert trl.logits == pytest.approx(78.3, abs=0.1)  # 8*20480*128256*4 B
    unsloth = estimate(LLAMA31_8B, dataclasses.replace(s, logits_chunk_rows=1), 80)
    assert unsloth.logits == pytest.approx(9.8, abs=0.1)


def test_estimate_components_sum_and_fit_by_hand():
    s = TrainSetup(
        prompt_len=1024,
        completion_len=3072,
        group_size=8,
        rollouts_per_step=32,
        micro_batch_rows=4,
        lora_rank=32,
        offload_checkpoints=True,
        logits_chunk_rows=1,
        shared_vllm_weights=True,
        gpu_memory_utilization=0.5,
    )
    e = estimate(QWEN3_4B, s, 24)
    assert e.weights == pytest.approx(2 * 4_022_468_096 / GIB)
    assert e.trainable == pytest.approx(66_060_288 * 16 / GIB)
    assert e.kv_cache == pytest.approx(8 * 4096 * (2 * 36 * 8 * 128 * 2) / GIB)  # 4.5 GiB
    assert e.logits == pytest.approx(1 * 3072 * 151_936 * 4 / GIB)
    assert e.vllm_extra == pytest.approx(1.0)  # shared weights: vLLM runtime only
    assert e.tokens_per_step == 32 * 4096
    parts = e.weights + e.trainable + e.activations + e.logits + e.kv_cache + e.vllm_extra + 1.0
    assert e.total == pytest.approx(parts)
    # vLLM's pool must hold weights + KV + runtime; training gets what is left of 95% of the GPU.
    need = e.weights + e.kv_cache + 1.0
    lo, hi = e.util_range
    assert lo == pytest.approx(need / 24)
    assert hi == pytest.approx((0.95 * 24 - (e.total - need)) / 24)
    assert e.fits == (e.total <= 0.95 * 24 and lo <= 0.5 <= hi)
    unshared = estimate(QWEN3_4B, dataclasses.replace(s, shared_vllm_weights=False), 24)
    assert unshared.total == pytest.approx(e.total + e.weights)  # TRL colocate: second copy


def test_fit_flag_and_monotonicity():
    s = TrainSetup(
        prompt_len=1024,
        completion_len=4096,
        group_size=8,
        rollouts_per_step=32,
        micro_batch_rows=8,
        lora_rank=32,
    )
    base = estimate(QWEN3_4B, s, 24).total
    assert estimate(QWEN3_4B, dataclasses.replace(s, completion_len=8192), 24).total > base
    assert estimate(QWEN3_4B, dataclasses.replace(s, load_in_4bit=True), 24).total < base
    assert estimate(QWEN3_4B, dataclasses.replace(s, micro_batch_rows=1), 24).total < base
    assert estimate(QWEN3_4B, s, 1000).fits and not estimate(QWEN3_4B, s, 8).fits


def test_plan_run_on_the_4b_consumer_preset():
    from polaris_lib.config.presets import get_preset

    run = get_preset("qwen3-4b-24gb")
    df = plan.plan_run(run, 24)
    assert list(df["stage"]) == [1, 2, 3]
    parts = [c for c in df.columns if c.endswith("_gb") and c not in ("total_gb", "gpu_gb")]
    assert (df[parts].sum(axis=1) - df["total_gb"]).abs().max() < 1e-9
    assert df["seq_len"].is_monotonic_increasing and df["total_gb"].is_monotonic_increasing
    assert (df["tokens_per_step"] == df["seq_len"] * run.stages[0].rollouts_per_step).all()
    spec, s = QWEN3_4B, plan.setup_for_stage(run, run.stages[0])
    for row in df.itertuples():
        assert row.fits or row.suggestions, row.stage  # no silent "does not fit"
    # Every micro-batch suggestion must really fit when applied.
    for text in df.loc[0, "suggestions"]:
        if text.startswith("per_device_batch_size"):
            rows = int(text.split("->")[1].split(":")[0])
            assert estimate(spec, dataclasses.replace(s, micro_batch_rows=rows), 24).total <= 22.8
    big = plan.plan_run(run, 80)
    assert big["fits"].all() or big["suggestions"].map(bool).all()


def test_plan_run_rejects_unknown_model():
    from polaris_lib.config.presets import get_preset

    run = get_preset("qwen3-4b-24gb")
    run.model.name_or_path = "someone/unknown-7b"
    with pytest.raises(ValueError, match="unknown-7b"):
        plan.plan_run(run, 24)


def test_plain_trl_logits_follow_its_fused_head_not_full_logits():
    """TRL 1.15 computes GRPO log-probs through a fused LM head in 4096-token x 32768-vocab bf16
    tiles (trl/kernels/chunked_logprob.py): the planner counts that, not 8 x 39,936 x 151,936
    fp32 logits (181 GB, which made every paper stage look 180 GB heavier than it is)."""
    from polaris_lib.config import get_preset
    from polaris_lib.scale_out.memory import MODEL_SPECS, fused_head_bytes
    from polaris_lib.scale_out.plan import plan_run, setup_for_stage

    run = get_preset("qwen3-4b-paper")
    s = setup_for_stage(run, run.stage(1))
    assert s.fused_lm_head and s.logits_chunk_rows is None
    spec = MODEL_SPECS["Qwen/Qwen3-4B"]
    tokens = 8 * 39936
    by_hand = 4096 * 32768 * 2 + tokens * 32 + tokens * 2560 * 4 + 151936 * 2560 * 4
    assert fused_head_bytes(spec, s) == by_hand
    row = plan_run(run, 80).iloc[0]
    assert row.logits_gb == pytest.approx(by_hand / GIB) and row.logits_gb < 6
    full = 8 * 39936 * 151936 * 4 / GIB
    assert full > 180  # what the planner counted before
    unsloth = setup_for_stage(get_preset("qwen3-4b-24gb"), get_preset("qwen3-4b-24gb").stage(1))
    assert not unsloth.fused_lm_head and unsloth.logits_chunk_rows == 1  # Unsloth's own loss


@pytest.mark.parametrize("preset", ["qwen3-0.6b-24gb", "qwen3-1.7b-24gb", "qwen3-4b-24gb"])
def test_consumer_extrapolation_goes_past_32k_within_24gb(preset):
    """Issue 12, defect 11: notebook 04 on a consumer preset samples past Qwen3's 32,768 native
    positions (inside YaRN's 49,152), and one vLLM engine sampling alone holds at least one
    sequence of that length in 24 GB."""
    from polaris_lib.config import get_preset

    fit = plan.extrapolation_fit(get_preset(preset), 24)
    assert fit["original_positions"] < fit["context"] <= fit["yarn_positions"] == 49152
    assert fit["sequences"] >= 1, fit
    # By hand for the 4B: K and V of 36 layers x 8 heads x 128 dims in bf16 per token.
    if preset == "qwen3-4b-24gb":
        assert fit["kv_per_sequence_gb"] == pytest.approx(49152 * 2 * 36 * 1024 * 2 / GIB)
        print(f"\n[04 sizing] {preset}: {fit}")
