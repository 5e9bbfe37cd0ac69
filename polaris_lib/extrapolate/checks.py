"""RoPE variants for the length-extrapolation step (RECIPE.md §6) and checks that they took effect.

Three ways to run a checkpoint past its trained length: ``none`` (as trained), ``yarn``
(`polaris_lib.policy.rope`: the recipe's factor, attention factor 1.0, rope_theta kept) and ``linear``
(plain position interpolation with the same factor: every position divided by it, the baseline
YaRN improves on). `rope_check` loads each one and records what changed (config, rotary inverse
frequencies, attention scaling, logits inside and beyond the original context); `position_loss`
measures per-token loss by position on held-out reference traces, teacher-forced (toy world).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from polaris_lib.config.sections import RunConfig
from polaris_lib.evaluate import run as evaluate

VARIANTS = ("none", "yarn", "linear")
"""RoPE variants compared: as trained, YaRN, linear position interpolation (same factor)."""
LOSS_EXTRA_TERMS = 5
"""Toy reference traces for the position-loss curve go this far past toy.max_terms."""


def linear_rope_parameters(config, factor: float) -> dict:
    """Position interpolation (rope_type 'linear'): positions / factor, the model's theta kept."""
    from polaris_lib.policy.rope import _rope_params

    old = _rope_params(config)
    if old.get("rope_theta") is None:
        raise ValueError("the model config has no rope_theta; cannot build linear RoPE settings")
    return {"rope_type": "linear", "factor": float(factor), "rope_theta": float(old["rope_theta"])}


def linear_vllm_kwargs(config, yarn) -> dict:
    """vllm.LLM keywords for linear interpolation, the same extended context as YaRN's."""
    from polaris_lib.policy.rope import yarn_max_length

    longest = max(config.max_position_embeddings, yarn_max_length(yarn))
    overrides = {"rope_parameters": linear_rope_parameters(config, yarn.factor),
                 "max_position_embeddings": longest}  # fmt: skip
    return {"hf_overrides": overrides, "max_model_len": yarn_max_length(yarn)}


def variant_settings(cfg: RunConfig, checkpoint: str | None) -> pd.DataFrame:
    """What each variant sets: transformers rope_parameters and the vLLM keywords (as JSON)."""
    import json

    from transformers import AutoConfig

    from polaris_lib.policy.rope import vllm_yarn_kwargs, yarn_rope_parameters

    config = AutoConfig.from_pretrained(evaluate.model_path(cfg, checkpoint))
    y = dataclasses.replace(cfg.yarn, enabled=True)
    rows = [
        ("none", config.rope_parameters, {}),
        ("yarn", yarn_rope_parameters(config, y), vllm_yarn_kwargs(config, y)),
        ("linear", linear_rope_parameters(config, y.factor), linear_vllm_kwargs(config, y)),
    ]
    return pd.DataFrame(
        [dict(variant=v, rope_parameters=json.dumps(dict(p)), vllm_kwargs=json.dumps(k))
         for v, p, k in rows]
    )  # fmt: skip


def load_variant(cfg: RunConfig, checkpoint: str | None, variant: str):
    """(model, tokenizer) of one RoPE variant; none and yarn go through the kit's eval loader."""
    if variant not in VARIANTS:
        raise ValueError(f"RoPE variant {variant!r}: choose one of {VARIANTS}")
    if variant != "linear":
        yarn = dataclasses.replace(cfg.yarn, enabled=True) if variant == "yarn" else None
        return evaluate.load_for_eval(cfg, checkpoint, yarn)
    from transformers import AutoConfig

    path = evaluate.model_path(cfg, checkpoint)
    config = AutoConfig.from_pretrained(path)
    config.rope_parameters = linear_rope_parameters(config, cfg.yarn.factor)
    if cfg.model.use_vllm and cfg.model.backend == "transformers":
        from vllm import LLM

        llm = LLM(model=path, dtype=cfg.model.dtype, seed=cfg.seed,
                  **linear_vllm_kwargs(config, cfg.yarn))  # fmt: skip
        return llm, llm.get_tokenizer()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polaris_lib.policy.load import _torch_dtype, resolve_device

    device = resolve_device(cfg.model.device)
    model = AutoModelForCausalLM.from_pretrained(
        path, config=config, dtype=_torch_dtype(cfg.model, device)
    )
    return model.to(device).eval(), AutoTokenizer.from_pretrained(path)


def _rotary(model):
    return next(m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding"))


def check_input(cfg: RunConfig, tokenizer):
    """(1, T) token ids reaching past the original context: a long toy trace, else random ids."""
    import torch

    original = cfg.yarn.original_max_position_embeddings
    if cfg.model.name_or_path != "toy":
        return torch.randint(100, 10_000, (1, original + 256))
    (prompt, completion), *_ = reference_texts(cfg, tokenizer, n=1, terms=cfg.toy.max_terms + 5)
    return torch.tensor([tokenizer(prompt + completion, add_special_tokens=False).input_ids])


def rope_check(cfg: RunConfig, checkpoint: str | None, variants=VARIANTS, load_fn=None):
    """Did each variant take effect? Its config, rotary state and logit change against 'none'.

    Variants load one at a time as transformers models (never vLLM: logits are needed); logits
    are compared at up to 128 positions inside and 128 beyond the original context.
    """
    import torch

    hf = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, use_vllm=False))
    original = cfg.yarn.original_max_position_embeddings
    ids = keep = ref = None
    rows = []
    for v in ["none", *[x for x in variants if x != "none"]]:
        model, tok = (load_fn or load_variant)(hf, checkpoint, v)
        if ids is None:
            ids = check_input(cfg, tok)
            inside, beyond = np.arange(original), np.arange(original, ids.shape[1])
            keep = torch.tensor(np.r_[inside[-128:], beyond[:128]])
            n_in = len(inside[-128:])
        with torch.no_grad():
            out = model(input_ids=ids.to(model.device), logits_to_keep=keep.to(model.device))
        logits, rot = out.logits[0].float().cpu(), _rotary(model)  # (positions kept, V)
        inv = rot.inv_freq.float().cpu()
        ref = ref or (logits, inv)
        diff = (logits - ref[0]).abs().amax(-1)  # (positions kept,)
        rows.append(_check_row(v, model, rot, diff, n_in, inv, ref[1]))
        del model
    return pd.DataFrame(rows)


def _check_row(variant, model, rot, diff, n_in: int, inv, inv_ref) -> dict:
    """One rope_check row; diff[:n_in]: positions inside the original context, the rest beyond."""
    import torch

    from polaris_lib.policy.rope import yarn_applied

    p = model.config.rope_parameters
    return dict(
        variant=variant, rope_type=p.get("rope_type"), factor=p.get("factor"),
        original_max_position_embeddings=p.get("original_max_position_embeddings"),
        attention_factor=p.get("attention_factor"), rope_theta=p.get("rope_theta"),
        rotary_rope_type=rot.rope_type, attention_scaling=float(rot.attention_scaling),
        inv_freq_changed=int((~torch.isclose(inv, inv_ref)).sum()), inv_freq_dims=inv.numel(),
        yarn_applied=yarn_applied(model), logit_diff_inside=float(diff[:n_in].max()),
        logit_diff_beyond=float(diff[n_in:].max()),
    )  # fmt: skip


# ----------------------------------------------------------------------------- position loss
def reference_texts(cfg: RunConfig, tokenizer, n: int = 48, terms: int | None = None):
    """(prompt, reference completion) pairs of held-out toy items, up to max_terms + 5 terms
    (or exactly `terms` terms)."""
    from polaris_lib.toy.model import prompt_text
    from polaris_lib.toy.task import IM_END, make_problems, reference_solution

    t = cfg.toy
    lo = terms or max(t.min_terms, t.max_terms - 2)
    hi = terms or t.max_terms + LOSS_EXTRA_TERMS
    probs = make_problems(t, "test", n, seed=cfg.seed + 1, min_terms=lo, max_terms=hi)
    return [(prompt_text(tokenizer, p), reference_solution(p) + IM_END) for p in probs["problem"]]


def position_loss(model, tokenizer, pairs: list[tuple[str, str]], bin_size: int = 8):
    """Teacher-forced per-token loss on the completions (nats), by absolute position.

    One right-padded batch; positions are absolute (0 = the first prompt token) and grouped into
    bins of `bin_size` (labelled by their first position): a trace's tokens alternate between
    near-certain ('+', ' ') and hard (digits), so single positions are too noisy to read.
    """
    import torch

    seqs = [
        (tokenizer(p, add_special_tokens=False).input_ids,
         tokenizer(c, add_special_tokens=False).input_ids)
        for p, c in pairs
    ]  # fmt: skip
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(seqs):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        mask[i, : len(p) + len(c)] = 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1): loss of token t+1
    rows = [
        dict(position=(t + 1) // bin_size * bin_size, loss=float(nll[i, t]))
        for i, (p, c) in enumerate(seqs)
        for t in range(len(p) - 1, len(p) + len(c) - 1)
    ]
    t = pd.DataFrame(rows).groupby("position")["loss"].agg(["mean", "size"])
    return t.reset_index().rename(columns={"mean": "loss", "size": "n"})


def _weighted(g: pd.DataFrame) -> float | None:
    return float((g["loss"] * g["n"]).sum() / g["n"].sum()) if len(g) else None


def loss_summary(loss: pd.DataFrame, context: int) -> pd.DataFrame:
    """Token-weighted mean loss per variant inside and beyond the original context."""
    rows = []
    for v, g in loss.groupby("variant", sort=False):
        inside = g["position"] < context
        rows.append(dict(variant=v, loss_inside=_weighted(g[inside]),
                         loss_beyond=_weighted(g[~inside]),
                         tokens_beyond=int(g["n"][~inside].sum())))  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "loss_inside", "loss_beyond", "tokens_beyond"])


def position_loss_for(cfg: RunConfig, checkpoint: str | None, variants=VARIANTS, load_fn=None):
    """position_loss of every variant on held-out toy reference traces (long ones included).

    Needs reference traces, which only the toy world has: for another model the table is empty
    and attrs["note"] says why.
    """
    cols = ["variant", "position", "loss", "n"]
    if cfg.model.name_or_path != "toy":
        out = pd.DataFrame(columns=cols)
        out.attrs["note"] = "needs reference traces: available for the toy world (tiny preset) only"
        return out
    frames = []
    for v in variants:
        model, tok = (load_fn or load_variant)(cfg, checkpoint, v)
        frames.append(position_loss(model, tok, reference_texts(cfg, tok)).assign(variant=v))
        del model
    return pd.concat(frames, ignore_index=True)[cols]
