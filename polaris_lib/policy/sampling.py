"""One sampling interface for every step that reads the policy (probe, curation, evaluation).

`sample(model, tokenizer, problems, n=..., temperature=..., ...)` returns a tidy table with one row
per (problem, sample): problem_id, sample_idx, text, n_tokens, finished, truncated.
Backends:
- transformers (CPU or GPU): batched ``generate`` with left padding, each prompt repeated n times,
  one seeded generator state per batch so a run is reproducible.
- vLLM offline (GPU): a ``vllm.LLM``, or an Unsloth model loaded with ``fast_inference=True``
  (``model.fast_generate``), with ``SamplingParams``; ``max_tokens`` is always set because vLLM's
  default is 16 tokens.
Special tokens such as ``</think>`` stay in `text` (the grader needs them); eos/pad are stripped.

LoRA checkpoints: a vLLM engine (a ``vllm.LLM``, or Unsloth's fast_inference engine) serves the
base weights and applies an adapter per request. `load_policy` attaches the adapter's
``LoRARequest`` to the engine it returns for an adapter folder (`attach_adapter`), and `sample`
passes it on every call unless given another: no caller can sample an adapter checkpoint as its
base model by forgetting it. (A transformers model loaded from an adapter folder has the adapter
in its weights already.)

Engine lifetime: `loaded_model(pair)` holds a (model, tokenizer) for one block; on exit a vLLM
engine is shut down and its GPU memory given back (`release_engine`) before the caller loads the
next checkpoint's engine. Every call site that loads engines in a loop goes through it.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from polaris_lib.data.prompt import prompt_texts

log = logging.getLogger(__name__)

COLUMNS = ["problem_id", "sample_idx", "text", "n_tokens", "finished", "truncated"]
_ADAPTER_ATTR = "polaris_lora_request"


def attach_adapter(model, lora_request) -> None:
    """Record on a vLLM-backed policy the LoRA request every sampling call must carry."""
    setattr(model, _ADAPTER_ATTR, lora_request)


def adapter_request(model):
    """The LoRA request attached to `model` by `load_policy` (None: base weights, or none needed)."""
    return getattr(model, _ADAPTER_ATTR, None)


def resolve_backend(model, backend: str = "auto") -> str:
    """'vllm' for a vllm.LLM or an Unsloth fast_inference model, else 'transformers'."""
    if backend not in ("auto", "transformers", "vllm"):
        raise ValueError(f"sampling backend {backend!r}: choose auto, transformers or vllm")
    if backend != "auto":
        return backend
    is_llm = type(model).__module__.startswith("vllm") and type(model).__name__ == "LLM"
    return "vllm" if is_llm or getattr(model, "vllm_engine", None) is not None else "transformers"


def sample(
    model,
    tokenizer,
    problems: pd.DataFrame,
    *,
    n: int,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int,
    seed: int = 0,
    suffix: str = "",
    batch_size: int = 64,
    progress: bool = True,
    backend: str = "auto",
    lora_request=None,
) -> pd.DataFrame:
    """n completions per problem row; temperature 0 means greedy. See the module docstring.

    `lora_request` (vLLM only) defaults to the adapter `load_policy` attached to the model."""
    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("sample: n, max_new_tokens and batch_size must be >= 1")
    if temperature < 0:
        raise ValueError(f"sample: temperature must be >= 0 (0 = greedy), got {temperature}")
    missing = {"problem_id", "problem"} - set(problems.columns)
    if missing:
        raise KeyError(f"sample: problems table lacks column(s) {sorted(missing)}")
    if len(problems) == 0:
        return pd.DataFrame(columns=COLUMNS)
    prompts = prompt_texts(tokenizer, problems, suffix)
    kw = dict(n=n, temperature=temperature, top_p=top_p, top_k=top_k)
    kw.update(max_new_tokens=max_new_tokens, seed=seed)
    if resolve_backend(model, backend) == "vllm":
        lora = lora_request if lora_request is not None else adapter_request(model)
        rows = _sample_vllm(model, tokenizer, prompts, lora_request=lora, **kw)
    else:
        rows = _sample_hf(model, tokenizer, prompts, batch_size=batch_size, progress=progress, **kw)
    ids = list(problems["problem_id"])
    out = pd.DataFrame(rows, columns=["row", *COLUMNS[1:]])
    out.insert(0, "problem_id", [ids[r] for r in out.pop("row")])
    return out[COLUMNS]


def _sample_hf(
    model,
    tokenizer,
    prompts,
    *,
    n,
    temperature,
    top_p,
    top_k,
    max_new_tokens,
    seed,
    batch_size,
    progress,
) -> list[tuple]:
    """Batched transformers generate: rows (prompt_row, sample_idx, text, n_tokens, finished,
    truncated); truncated = stopped by max_new_tokens before eos."""
    import torch

    jobs = [(r, j) for r in range(len(prompts)) for j in range(n)]  # (prompt row, sample index)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = eos if pad is None else pad
    device = next(model.parameters()).device
    greedy = temperature == 0
    gen_kw = dict(
        do_sample=not greedy,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
        # Explicit: a checkpoint's generation_config may carry its own top_k/top_p (Qwen3: 20/0.95).
        top_k=None if greedy else top_k,
        top_p=None if greedy else top_p,
        temperature=None if greedy else temperature,
    )
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    rows, starts = [], range(0, len(jobs), batch_size)
    try:
        for b, start in enumerate(_bar(starts, progress, len(jobs), batch_size)):
            chunk = jobs[start : start + batch_size]
            enc = tokenizer(
                [prompts[r] for r, _ in chunk],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            torch.manual_seed(seed * 1_000_003 + b)  # one reproducible stream per batch
            with torch.no_grad():
                out = model.generate(**enc, **gen_kw)
            completions = out[:, enc.input_ids.shape[1] :].tolist()
            for (r, j), ids in zip(chunk, completions, strict=True):
                finished = eos in ids
                ids = ids[: ids.index(eos) + 1] if finished else ids
                text = tokenizer.decode(
                    [t for t in ids if t not in (eos, pad)], skip_special_tokens=False
                )
                truncated = not finished and len(ids) >= max_new_tokens
                rows.append((r, j, text, len(ids), finished, truncated))
    finally:
        tokenizer.padding_side = old_side
    return rows


def _bar(starts, progress: bool, total: int, batch_size: int):
    if not progress or total <= batch_size:
        return starts
    from tqdm.auto import tqdm

    return tqdm(starts, desc=f"sampling {total} completions", unit="batch")


def _sample_vllm(
    model, tokenizer, prompts, *, n, temperature, top_p, top_k, max_new_tokens, seed, lora_request
) -> list[tuple]:
    """vLLM offline: a vllm.LLM (.generate) or an Unsloth fast_inference model (.fast_generate).

    finish_reason "stop" (eos or a stop string) -> finished; "length" -> truncated, whether the
    stop came from max_tokens or from the engine's max_model_len (a context cap vLLM applies
    silently, so such a response must not count as neither); anything else (abort) -> neither."""
    from vllm import SamplingParams

    params = SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_k=-1 if top_k == 0 else top_k,  # vLLM disables top-k with -1 (0 is rejected)
        max_tokens=max_new_tokens,  # vLLM's default is 16: always set it
        seed=seed,
        skip_special_tokens=False,  # keep </think> for the grader
    )
    gen = model.fast_generate if hasattr(model, "fast_generate") else model.generate
    kwargs = {"lora_request": lora_request} if lora_request is not None else {}
    # Token ids, tokenised exactly as the transformers path does (no special tokens added: the
    # chat template already holds them); a text prompt would get vLLM's own BOS on top.
    token_prompts = [
        {"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts
    ]
    outputs = gen(token_prompts, sampling_params=params, **kwargs)
    rows = []
    for r, req in enumerate(outputs):  # vLLM returns requests in prompt order
        for j, c in enumerate(req.outputs):
            reason = c.finish_reason
            rows.append((r, j, c.text, len(c.token_ids), reason == "stop", reason == "length"))
    return rows


# ----------------------------------------------------------------------------- engine lifetime
@dataclass
class LoadedModel:
    """A (model, tokenizer) pair held by `loaded_model`; both are None once it is released."""

    model: Any
    tokenizer: Any


@contextmanager
def loaded_model(pair) -> Iterator[LoadedModel]:
    """Hold a loaded (model, tokenizer) for one block; on exit let it go (errors included).

    A vLLM engine is released with `release_engine`; a transformers model is only dropped, as a
    `del` did before. Inside the block use `held.model` and keep no other reference to it: a
    reference left elsewhere keeps the weights alive.
    """
    held = LoadedModel(*pair)
    try:
        yield held
    finally:
        if resolve_backend(held.model) == "vllm":
            release_engine(held)
        held.model = held.tokenizer = None


# Shut down in this order; each exists in some vLLM versions only (checked with getattr).
_SHUTDOWNS = (
    ("shutdown",),  # an engine-level close, where the version has one
    ("llm_engine", "engine_core", "shutdown"),  # V1: ends the EngineCore process holding the GPU
    ("llm_engine", "model_executor", "shutdown"),  # V0: the executor's workers
)


def _vllm_engine(model):
    """The vllm.LLM behind a model: itself, or an Unsloth fast_inference model's `vllm_engine`."""
    engine = getattr(model, "vllm_engine", None)
    return model if engine is None else engine


def release_engine(held: LoadedModel) -> list[str]:
    """Shut `held`'s vLLM engine down and give its GPU memory back; returns the steps done.

    vLLM has no close() in every version, so this calls what exists and skips what does not: the
    engine's shutdown methods (`_SHUTDOWNS`), then drops the last reference (held.model/tokenizer
    become None), vLLM's `destroy_model_parallel` and `destroy_distributed_environment` (the next
    engine in this process sets its groups up again; skipped under a multi-process launcher, whose
    process group is not vLLM's), `gc.collect()` (vLLM objects hold reference cycles) and
    `torch.cuda.empty_cache()` (cached blocks go back to the driver for the next engine). A step
    that raises is logged and skipped: cleanup must not hide the error that ended the block.
    """
    done: list[str] = []
    engine = _vllm_engine(held.model)
    for path in _SHUTDOWNS:
        obj = engine
        for name in path:
            obj = getattr(obj, name, None)
        if callable(obj) and _attempt(obj, ".".join(path)):
            done.append(".".join(path))
    del engine, obj
    held.model = held.tokenizer = None
    done.append("dropped")
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        try:
            state = importlib.import_module("vllm.distributed.parallel_state")
        except ImportError:
            state = None
        for name in ("destroy_model_parallel", "destroy_distributed_environment"):
            fn = getattr(state, name, None)
            if callable(fn) and _attempt(fn, name):
                done.append(name)
    gc.collect()
    done.append("gc.collect")
    import torch

    if torch.cuda.is_available() and _attempt(torch.cuda.empty_cache, "cuda.empty_cache"):
        done.append("cuda.empty_cache")
    return done


def _attempt(fn, name: str) -> bool:
    try:
        fn()
    except Exception as exc:  # a half-dead engine may fail to close; the rest still runs
        log.warning("release_engine: %s failed (%s: %s); continuing", name, type(exc).__name__, exc)
        return False
    return True
