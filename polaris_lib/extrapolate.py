"""The length-extrapolation experiment of notebook 04 (RECIPE.md §6), at the preset's scale.

The paper evaluated Polaris-4B with and without YaRN at several maximum lengths and compared the
accuracy of responses per length bucket (< L/2, L/2..L, > L). Here the same experiment runs on any
checkpoint for three RoPE variants: ``none`` (the model as trained), ``yarn`` (rope.py, the
recipe's factor and attention factor 1.0) and ``linear`` (plain position interpolation with the same
factor: every position divided by it, the baseline YaRN improves on). On the tiny preset the items
are toy sums with more terms than training saw, so their traces need more than the trained length
(and, for the longest, more positions than the model was built with). A second measure needs no
sampling: per-token loss by position on reference traces, teacher-forced, beyond the trained length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import evaluate
from polaris_lib.config import RunConfig
from polaris_lib.eval_tables import length_bucket_accuracy, summarize

VARIANTS = ("none", "yarn", "linear")
"""RoPE variants compared: as trained, YaRN, linear position interpolation (same factor)."""
EXTRA_TERMS = 2
"""Toy items go up to toy.max_terms + this many terms (traces beyond the trained length)."""
LOSS_EXTRA_TERMS = 5
"""Toy reference traces for the position-loss curve go this far past toy.max_terms."""


# ----------------------------------------------------------------------------- the variants
def model_path(cfg: RunConfig, checkpoint: str | None) -> str:
    """Folder (or hub id) the weights load from; the toy base model is the built toy world."""
    if checkpoint:
        return checkpoint
    if cfg.model.name_or_path == "toy":
        from polaris_lib.toy import build_toy_world

        return str(build_toy_world(cfg.toy))
    return cfg.model.name_or_path


def linear_rope_parameters(config, factor: float) -> dict:
    """Position interpolation (rope_type 'linear'): positions / factor, the model's theta kept."""
    from polaris_lib.rope import _rope_params

    old = _rope_params(config)
    if old.get("rope_theta") is None:
        raise ValueError("the model config has no rope_theta; cannot build linear RoPE settings")
    return {"rope_type": "linear", "factor": float(factor), "rope_theta": float(old["rope_theta"])}


def load_variant(cfg: RunConfig, checkpoint: str | None, variant: str):
    """(model, tokenizer) of one RoPE variant; none and yarn go through the kit's eval loader."""
    if variant not in VARIANTS:
        raise ValueError(f"RoPE variant {variant!r}: choose one of {VARIANTS}")
    if variant != "linear":
        yarn = dataclasses.replace(cfg.yarn, enabled=True) if variant == "yarn" else None
        return evaluate.load_for_eval(cfg, checkpoint, yarn)
    from transformers import AutoConfig

    path = model_path(cfg, checkpoint)
    config = AutoConfig.from_pretrained(path)
    config.rope_parameters = linear_rope_parameters(config, cfg.yarn.factor)
    if cfg.model.use_vllm and cfg.model.backend == "transformers":
        from vllm import LLM

        llm = LLM(model=path, dtype=cfg.model.dtype, seed=cfg.seed,
                  hf_overrides={"rope_parameters": config.rope_parameters})  # fmt: skip
        return llm, llm.get_tokenizer()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polaris_lib.models import _torch_dtype, resolve_device

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
    """One rope_check row; diff[:n_in] are positions inside the original context, the rest beyond."""
    import torch

    from polaris_lib.rope import yarn_applied

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


# ----------------------------------------------------------------------------- the experiment
def extrapolation_problems(cfg: RunConfig, data_dir=None) -> pd.DataFrame:
    """Items for the experiment: toy sums past the trained length, else the eval benchmarks."""
    n = cfg.yarn.n_problems or None
    if cfg.model.name_or_path == "toy":
        from polaris_lib.toy import make_problems

        t = cfg.toy
        lo, hi = max(t.min_terms, t.max_terms - 1), t.max_terms + EXTRA_TERMS
        return make_problems(t, "test", n or 64, seed=cfg.seed, min_terms=lo, max_terms=hi)
    frames = [evaluate.load_benchmark(b, cfg, data_dir) for b in cfg.eval.benchmarks]
    return pd.concat(frames, ignore_index=True).head(n)


def run_extrapolation(
    cfg: RunConfig,
    out: str | Path,
    problems: pd.DataFrame,
    *,
    checkpoint: str | None,
    variants=VARIANTS,
    load_fn: Callable | None = None,
    sample_fn: Callable | None = None,
    grader=None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Sample and grade every (variant, max length); resumable like evaluation (pairs/ files).

    Sampling settings come from cfg.eval (temperature, top_p, top_k), k = yarn.n_samples, the
    budget is each of yarn.eval_max_lengths. Returns results.parquet's rows.
    """
    out = Path(out)
    frames = []
    for v in variants:
        runs = {}
        for length in cfg.yarn.eval_max_lengths:
            s = evaluate.pair_settings(cfg, "extrapolation", checkpoint)
            s.update(k=cfg.yarn.n_samples, max_new_tokens=length, variant=v,
                     problems=sorted(problems["problem_id"]), factor=cfg.yarn.factor)  # fmt: skip
            runs[length] = s
        todo = [n for n, s in runs.items() if not evaluate.pair_done(out, v, f"len{n}", s)]
        if todo:
            model, tok = (load_fn or load_variant)(cfg, checkpoint, v)
            for length in todo:
                df, timing = evaluate.evaluate_pair(model, tok, problems, runs[length],
                                                    grader=grader, sample_fn=sample_fn)  # fmt: skip
                df.insert(0, "benchmark", f"len{length}")
                df.insert(0, "checkpoint", v)
                evaluate.write_pair(out, v, f"len{length}", df, runs[length], timing)
                log(f"{v} @ {length} tokens: accuracy {df['correct'].mean():.3f}, "
                    f"truncated {df['truncated'].mean():.2f}")  # fmt: skip
            del model
        frames += [evaluate.read_pair(out, v, f"len{n}") for n in runs]
    res = pd.concat(frames, ignore_index=True).rename(columns={"checkpoint": "variant"})
    res["max_length"] = res.pop("benchmark").str.removeprefix("len").astype(int)
    extra = [c for c in ("difficulty", "trace_len") if c in problems.columns]
    return res.merge(problems[["problem_id", *extra]], on="problem_id", how="left")


def avg_vs_length(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """avg@k with its bootstrap interval per (variant, max length)."""
    t = results.assign(checkpoint=results["variant"], benchmark=results["max_length"])
    s = summarize(t, n_boot=n_boot, seed=seed)
    return s.rename(columns={"checkpoint": "variant", "benchmark": "max_length"})


def bucket_accuracy(results: pd.DataFrame, trained_length: int) -> pd.DataFrame:
    """Accuracy per response-length bucket against the trained length L, per variant and budget."""
    return length_bucket_accuracy(results, trained_length, by=["variant", "max_length"])


def accuracy_by_item(results: pd.DataFrame, column: str = "difficulty") -> pd.DataFrame:
    """Accuracy per item group (toy: number of terms) and variant, at the largest budget."""
    top = results[results["max_length"] == results["max_length"].max()]
    t = top.groupby([column, "variant"], sort=True)["correct"].mean().unstack("variant")
    return t[[v for v in VARIANTS if v in t.columns]]


# ----------------------------------------------------------------------------- position loss
def reference_texts(cfg: RunConfig, tokenizer, n: int = 48, terms: int | None = None):
    """(prompt, reference completion) pairs of held-out toy items, up to max_terms + 5 terms
    (or exactly `terms` terms)."""
    from polaris_lib.toy import IM_END, make_problems, prompt_text, reference_solution

    t = cfg.toy
    lo = terms or max(t.min_terms, t.max_terms - 2)
    hi = terms or t.max_terms + LOSS_EXTRA_TERMS
    probs = make_problems(t, "test", n, seed=cfg.seed + 1, min_terms=lo, max_terms=hi)
    return [(prompt_text(tokenizer, p), reference_solution(p) + IM_END) for p in probs["problem"]]


def position_loss(models: dict, tokenizer, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Teacher-forced per-token loss on the completions, by absolute position, for each model."""
    import torch

    rows = []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        c = tokenizer(completion, add_special_tokens=False).input_ids
        ids = torch.tensor([p + c])
        for v, m in models.items():
            with torch.no_grad():
                logp = torch.log_softmax(m(input_ids=ids).logits[0, :-1].float(), -1)  # (T-1, V)
            nll = -logp[torch.arange(len(p) - 1, ids.shape[1] - 1), ids[0, len(p) :]]
            pos = np.arange(len(p), ids.shape[1])
            rows += [dict(variant=v, position=int(q), loss=float(x))
                     for q, x in zip(pos, nll, strict=True)]  # fmt: skip
    t = pd.DataFrame(rows).groupby(["variant", "position"])["loss"].agg(["mean", "size"])
    return t.reset_index().rename(columns={"mean": "loss", "size": "n"})
