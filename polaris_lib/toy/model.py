"""The toy world's tokenizer and model: a char-level Qwen3 with Qwen3's chat template.

The task (sums, the teacher) is polaris_lib/toy/task.py; building and caching the world is
polaris_lib/toy/build.py.
"""

from __future__ import annotations

from polaris_lib.config.sections import ToyConfig
from polaris_lib.toy.task import IM_END, IM_START, PAD, SPECIAL_TOKENS, THINK, THINK_END, UNK

# Qwen3's template, reduced to what the kit uses (user/assistant/system turns, thinking switch).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


def build_tokenizer():
    """Character-level PreTrainedTokenizerFast with Qwen3's special tokens and chat template.

    As in Qwen3's tokenizer, ``<|im_start|>``, ``<|im_end|>`` and the pad token are *special*
    (dropped by ``decode(skip_special_tokens=True)``), while ``<think>``/``</think>`` are added
    tokens that are *not* special: TRL decodes completions with skip_special_tokens=True, and the
    grader must still see ``</think>``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.add_special_tokens([AddedToken(t, special=True) for t in (PAD, IM_START, IM_END, UNK)])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK, THINK_END)])
    # Every other character is its own piece (newline included).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # join pieces without the spaces WordLevel would insert
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[IM_START],
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(cfg: ToyConfig, tokenizer):
    """A freshly initialised tiny Qwen3ForCausalLM (seeded)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.hidden_size // cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def prompt_text(tokenizer, problem: str) -> str:
    """The chat-formatted prompt (user turn + assistant generation prompt) for a toy problem."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": problem}], tokenize=False, add_generation_prompt=True
    )
