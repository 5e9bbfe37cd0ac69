"""A tiny random Qwen3 with the toy char tokenizer: the model of the fast trainer/stage tests."""

from __future__ import annotations


def random_qwen3(max_positions: int = 64):
    """(model, tokenizer): 1 layer, hidden 32, seeded (seconds to build, no warm start)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from polaris_lib import toy

    tok = toy.build_tokenizer()
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=max_positions,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen3ForCausalLM(cfg), tok
