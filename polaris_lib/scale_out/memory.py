"""GPU memory formulas of one GRPO stage on one GPU, in plain numbers (the planner's formula layer).

`ModelSpec`, `TrainSetup` and `estimate` take plain numbers (no project config) and are checked
against hand calculations and Unsloth's published GRPO breakdown in tests/scale_out/test_plan.py;
polaris_lib/scale_out/plan.py maps a RunConfig onto them.
"GB" here means GiB (2**30 bytes), the unit nvidia-smi reports and "24 GB" cards are sold in.
Assumptions, each a stated approximation (docs/dependencies.md explains the sources):
- attention is flash/SDPA-style, so no seq x seq matrix is materialised;
- trainable parameters cost 16 B each beyond the bf16 weights: fp32 param (LoRA) or fp32 master
  (full FT), fp32 grad, AdamW m and v in fp32;
- NF4 4-bit with double quantisation costs 4.127 bits per linear weight; embeddings, lm_head and
  norms stay bf16 (bitsandbytes does not quantise them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GIB = 2**30
BF16 = 2
NF4_BYTES = (
    4 + 8 / 64 + 32 / (64 * 256)
) / 8  # 4-bit + 8-bit absmax/64 + fp32 absmax-of-absmax/256
TRAINABLE_BYTES = 16  # fp32 param or master + fp32 grad + AdamW m + v
LOGIT_BYTES = 4  # fp32 logits for the log-softmax (the GRPO memory hog)
# TRL 1.15's fused LM head (trl/trainer/utils.py add_fused_lm_head -> kernels/chunked_logprob.py)
# projects the labelled tokens in tiles of TOKEN_CHUNK_SIZE tokens x _CHUNKED_LOGPROB_CHUNK_SIZE
# vocabulary entries and keeps only per-token statistics: it never holds the full logits.
TRL_TOKEN_TILE = 4096
TRL_VOCAB_TILE = 32768
TRL_STATS_BYTES = 8 * 4  # fp32 per token: max, sums, target logit, log-prob, entropy, ...
CUDA_CONTEXT_GB = 1.0  # CUDA context + cuBLAS/allocator workspaces
VLLM_RUNTIME_GB = 1.0  # vLLM sampler buffers and CUDA graphs (not KV, not weights)
HEADROOM = 0.05  # keep 5% free for allocator fragmentation


@dataclass(frozen=True)
class ModelSpec:
    """Architecture numbers that drive memory (from the model's config.json)."""

    name: str
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    qkv_bias: bool = False
    qk_norm: bool = True

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def linear_params_per_layer(self) -> int:
        """q, k, v, o and the gated MLP (gate, up, down): the weights LoRA and NF4 act on."""
        h, i = self.hidden, self.intermediate
        return h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h + 3 * h * i

    @property
    def small_params_per_layer(self) -> int:
        """RMSNorm weights, q/k norms (Qwen3) and q/k/v biases (Qwen2): kept in bf16."""
        n = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        return n + ((self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0)

    @property
    def embedding_params(self) -> int:
        """Input embedding plus a separate lm_head when not tied."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def params(self) -> int:
        per_layer = self.linear_params_per_layer + self.small_params_per_layer
        return self.n_layers * per_layer + self.embedding_params + self.hidden  # + final norm

    def lora_params(self, rank: int) -> int:
        """LoRA A (in x r) and B (r x out) on q, k, v, o, gate, up, down of every layer."""
        h, i = self.hidden, self.intermediate
        in_out = (h + self.q_dim) * 2 + (h + self.kv_dim) * 2 + (h + i) * 3
        return self.n_layers * rank * in_out

    def kv_bytes_per_token(self, dtype_bytes: int = BF16) -> int:
        """K and V for one token over all layers."""
        return 2 * self.n_layers * self.kv_dim * dtype_bytes


# Sources: each model's config.json on the Hub (Qwen/Qwen3-*, deepseek-ai/DeepSeek-R1-Distill-Qwen-7B);
# param counts computed from them match the model cards (0.6B/1.7B/4.0B, 7.6B).
MODEL_SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("Qwen/Qwen3-0.6B", 28, 1024, 3072, 16, 8, 128, 151936, True),
        ModelSpec("Qwen/Qwen3-1.7B", 28, 2048, 6144, 16, 8, 128, 151936, True),
        ModelSpec("Qwen/Qwen3-4B", 36, 2560, 9728, 32, 8, 128, 151936, True),
        ModelSpec(
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            28,
            3584,
            18944,
            28,
            4,
            128,
            152064,
            False,
            qkv_bias=True,
            qk_norm=False,
        ),
    )
}


@dataclass(frozen=True)
class TrainSetup:
    """One GRPO stage on one GPU, in plain numbers (no project config needed)."""

    prompt_len: int
    completion_len: int
    group_size: int
    rollouts_per_step: int
    micro_batch_rows: int
    lora_rank: int = 0
    load_in_4bit: bool = False
    gradient_checkpointing: bool = True
    offload_checkpoints: bool = False  # Unsloth's gradient checkpointing moves them to CPU RAM
    logits_chunk_rows: int | None = (
        None  # rows whose logits exist at once; None = whole micro-batch
    )
    fused_lm_head: bool = False  # TRL 1.15's chunked log-prob head (fused_head_bytes)
    use_vllm: bool = True
    shared_vllm_weights: bool = False  # Unsloth fast_inference shares weights with vLLM
    gpu_memory_utilization: float | None = None  # vLLM's pool as a fraction of the GPU

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.completion_len


@dataclass(frozen=True)
class Estimate:
    """Per-component GPU memory (GiB) of one setup, and whether it fits."""

    weights: float
    trainable: float
    activations: float
    logits: float
    kv_cache: float
    vllm_extra: float
    overhead: float
    gpu_gb: float
    trainable_params: int
    tokens_per_step: int
    util_range: tuple[float, float] | None = None  # gpu_memory_utilization values that work
    util: float | None = None  # the configured gpu_memory_utilization (None = not checked)

    @property
    def split_problem(self) -> str:
        """Why vLLM's gpu_memory_utilization split does not work; "" when it does."""
        if self.util is None or self.util_range is None:
            return ""
        lo, hi = self.util_range
        if lo <= self.util <= hi:
            return ""
        want = f"{lo:.2f}-{hi:.2f}" if lo <= hi else "none fits"
        return f"gpu_memory_utilization {self.util:.2f} -> {want}"

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.trainable
            + self.activations
            + self.logits
            + self.kv_cache
            + self.vllm_extra
            + self.overhead
        )

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_gb * (1 - HEADROOM) and not self.split_problem


def weight_bytes(spec: ModelSpec, load_in_4bit: bool) -> float:
    """bf16 everywhere, or NF4 on the layer linears with the rest in bf16."""
    linear = spec.n_layers * spec.linear_params_per_layer
    rest = spec.params - linear
    return linear * (NF4_BYTES if load_in_4bit else BF16) + rest * BF16


def activation_bytes(spec: ModelSpec, s: TrainSetup) -> float:
    """Checkpointed layer inputs for all layers plus one layer's recompute (activations + grads)."""
    tokens = s.micro_batch_rows * s.seq_len
    # One layer's live tensors per token: 2 norm outputs + residual + o-proj out (4h), q and
    # attention output (2 q_dim), k and v (2 kv_dim), gate, up and their product (3i); x2 for grads.
    per_token = (
        2 * BF16 * (4 * spec.hidden + 2 * spec.q_dim + 2 * spec.kv_dim + 3 * spec.intermediate)
    )
    layer = tokens * per_token
    if not s.gradient_checkpointing:
        return spec.n_layers * layer
    ckpt_layers = 2 if s.offload_checkpoints else spec.n_layers  # offload keeps ~2 in flight
    return ckpt_layers * tokens * spec.hidden * BF16 + layer


def fused_head_bytes(spec: ModelSpec, s: TrainSetup) -> float:
    """Live memory of TRL 1.15's fused LM head over one micro-batch's completion tokens.

    One bf16 tile (<= 4096 tokens x 32768 vocab), fp32 per-token statistics, and in backward the
    fp32 gradient of the hidden states plus, when the LM head trains (full fine-tuning; tied
    embeddings included), its fp32 gradient accumulator. Nothing of size tokens x vocab."""
    tokens = s.micro_batch_rows * s.completion_len
    tile = min(tokens, TRL_TOKEN_TILE) * min(spec.vocab, TRL_VOCAB_TILE) * BF16
    grad_hidden = tokens * spec.hidden * 4
    grad_head = spec.vocab * spec.hidden * 4 if s.lora_rank == 0 else 0
    return tile + tokens * TRL_STATS_BYTES + grad_hidden + grad_head


def estimate(spec: ModelSpec, s: TrainSetup, gpu_gb: float) -> Estimate:
    """GPU memory of one training step plus its colocated rollout, component by component."""
    w = weight_bytes(spec, s.load_in_4bit)
    n_train = spec.lora_params(s.lora_rank) if s.lora_rank > 0 else spec.params
    rows = s.logits_chunk_rows or s.micro_batch_rows
    if s.fused_lm_head:
        logits = fused_head_bytes(spec, s)
    else:  # full fp32 completion logits of `rows` rows at once
        logits = rows * s.completion_len * spec.vocab * LOGIT_BYTES
    kv = s.group_size * s.seq_len * spec.kv_bytes_per_token() if s.use_vllm else 0.0
    vllm_extra = (0 if s.shared_vllm_weights else w) + VLLM_RUNTIME_GB * GIB if s.use_vllm else 0.0
    est = Estimate(
        weights=w / GIB,
        trainable=n_train * TRAINABLE_BYTES / GIB,
        activations=activation_bytes(spec, s) / GIB,
        logits=logits / GIB,
        kv_cache=kv / GIB,
        vllm_extra=vllm_extra / GIB,
        overhead=CUDA_CONTEXT_GB,
        gpu_gb=gpu_gb,
        trainable_params=n_train,
        tokens_per_step=s.rollouts_per_step * s.seq_len,
    )
    if s.use_vllm:
        # vLLM claims utilization x GPU for its weights + KV + runtime; training gets the rest
        # (a second weight copy, when not shared, is the trainer's).
        need = est.weights + est.kv_cache + VLLM_RUNTIME_GB
        train = est.total - need
        lo, hi = need / gpu_gb, (gpu_gb * (1 - HEADROOM) - train) / gpu_gb
        est = dataclasses.replace(est, util_range=(lo, hi), util=s.gpu_memory_utilization)
    return est


@dataclass(frozen=True)
class SamplingFit:
    """One vLLM engine sampling alone (notebook 04: no trainer beside it) on one GPU."""

    weights: float
    """GiB of weights."""
    kv_per_sequence: float
    """GiB of KV cache one sequence of the full context takes."""
    kv_room: float
    """GiB left for the KV cache after weights, vLLM's runtime, the CUDA context and headroom."""

    @property
    def sequences(self) -> float:
        """Full-context sequences the KV cache holds at once (>= 1: the length fits)."""
        return self.kv_room / self.kv_per_sequence


def sampling_fit(spec: ModelSpec, context_len: int, gpu_gb: float, load_in_4bit=False):
    """Can one GPU sample sequences of `context_len` tokens (prompt + response) with vLLM?"""
    w = weight_bytes(spec, load_in_4bit) / GIB
    room = gpu_gb * (1 - HEADROOM) - w - VLLM_RUNTIME_GB - CUDA_CONTEXT_GB
    return SamplingFit(w, context_len * spec.kv_bytes_per_token() / GIB, room)
