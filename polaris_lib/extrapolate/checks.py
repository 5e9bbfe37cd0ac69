"""Checks that the RoPE variants of the length-extrapolation step took effect (RECIPE.md §6).

Three ways to run a checkpoint past its trained length (`polaris_lib.policy.rope`): ``none`` (as
trained), ``yarn`` (the recipe's factor, attention factor 1.0, rope_theta kept) and ``linear``
(plain position interpolation with the same factor, the baseline YaRN improves on); the policy
loads with each through `load_policy(run, checkpoint, rope=variant)`. `rope_check` loads each one and records what changed (config, rotary inverse
frequencies, attention scaling, logits inside and beyond the original context); `position_loss`
measures per-token loss by position on held-out reference traces, teacher-forced (toy world).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from polaris_lib.config.sections import RunConfig
from polaris_lib.policy.load import base_config, load_policy, model_path
from polaris_lib.policy.rope import (
    VARIANTS,
    linear_rope_parameters,
    linear_vllm_kwargs,
    rope_type,
    vllm_yarn_kwargs,
    yarn_applied,
    yarn_rope_parameters,
)
from polaris_lib.toy.model import prompt_text
from polaris_lib.toy.task import IM_END, make_problems, reference_solution

LOSS_EXTRA_TERMS = 5
"""Toy reference traces for the position-loss curve go this far past toy.max_terms."""


def variant_settings(cfg: RunConfig, checkpoint: str | None) -> pd.DataFrame:
    """What each variant sets: transformers rope_parameters and the vLLM keywords (as JSON)."""
    import json

    # A LoRA checkpoint (stageN/final of an Unsloth preset) holds no config.json: its base's.
    config = base_config(model_path(cfg, checkpoint))
    y = dataclasses.replace(cfg.yarn, enabled=True)
    rows = [
        ("none", config.rope_parameters, {}),
        ("yarn", yarn_rope_parameters(config, y), vllm_yarn_kwargs(config, y)),
        ("linear", linear_rope_parameters(config, y.factor), linear_vllm_kwargs(config, y)),
    ]
    return pd.DataFrame(
        [
            dict(variant=v, rope_parameters=json.dumps(dict(p)), vllm_kwargs=json.dumps(k))
            for v, p, k in rows
        ]
    )


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
        model, tok = (load_fn or load_policy)(hf, checkpoint, v)
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

    p = getattr(model.config, "rope_parameters", None) or {}
    return dict(
        variant=variant,
        rope_type=rope_type(model),
        factor=p.get("factor"),
        original_max_position_embeddings=p.get("original_max_position_embeddings"),
        attention_factor=p.get("attention_factor"),
        rope_theta=p.get("rope_theta"),
        # Unsloth's rotary module has neither attribute (its type lives in model.config only)
        rotary_rope_type=getattr(rot, "rope_type", None),
        attention_scaling=float(getattr(rot, "attention_scaling", 1.0)),
        inv_freq_changed=int((~torch.isclose(inv, inv_ref)).sum()),
        inv_freq_dims=inv.numel(),
        yarn_applied=yarn_applied(model),
        logit_diff_inside=float(diff[:n_in].max()),
        logit_diff_beyond=float(diff[n_in:].max()),
    )


# ----------------------------------------------------------------------------- position loss
def reference_texts(cfg: RunConfig, tokenizer, n: int = 48, terms: int | None = None):
    """(prompt, reference completion) pairs of held-out toy items, up to max_terms + 5 terms
    (or exactly `terms` terms)."""
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
        (
            tokenizer(p, add_special_tokens=False).input_ids,
            tokenizer(c, add_special_tokens=False).input_ids,
        )
        for p, c in pairs
    ]
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
        rows.append(
            dict(
                variant=v,
                loss_inside=_weighted(g[inside]),
                loss_beyond=_weighted(g[~inside]),
                tokens_beyond=int(g["n"][~inside].sum()),
            )
        )
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
        model, tok = (load_fn or load_policy)(cfg, checkpoint, v)
        frames.append(position_loss(model, tok, reference_texts(cfg, tok)).assign(variant=v))
        del model
    return pd.concat(frames, ignore_index=True)[cols]
