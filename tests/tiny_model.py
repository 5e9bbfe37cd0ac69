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


def save_adapter(base: str, out, rank: int = 4) -> str:
    """A non-zero LoRA adapter on `base`, saved as PEFT saves it (what TRL's save_model writes
    for a LoRA policy), with the tokenizer beside it as stage.train_stage does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polaris_lib.policy.load import LORA_TARGETS

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(LORA_TARGETS),
        init_lora_weights=False,  # random B as well: the adapter changes the outputs
    )
    get_peft_model(model, lora).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return str(out)
