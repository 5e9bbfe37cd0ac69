"""Building the toy world (polaris_lib/toy/task.py): warm start, build stats, cache and shipped copy.

Everything is saved with ``save_pretrained`` into a folder keyed by a content hash of the config,
seed and ``toy.CODE_VERSION``, and reloads with ``AutoTokenizer``/``AutoModelForCausalLM``.
The default config's world is committed under SHIPPED_DIR, so a fresh clone skips the warm start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib.config.presets import HARD_TOY
from polaris_lib.config.sections import ToyConfig
from polaris_lib.policy.sampling import sample
from polaris_lib.toy.model import build_model, build_tokenizer, prompt_text
from polaris_lib.toy.task import (
    CODE_VERSION,
    IM_END,
    THINK_END,
    _split_of,
    make_problems,
    problem_text,
    teacher_solution,
)


# ----------------------------------------------------------------------------- warm start
def _warmstart_batch(cfg: ToyConfig, tokenizer, rng: np.random.Generator, template: str):
    """(input_ids, labels) for one batch of sloppy-teacher traces from the train split.

    Each row draws its own number of terms (a batch with one k per batch learned far slower in
    our trials); rows are right-padded, so with causal attention the pads never affect the loss.
    """
    import torch

    prompts, answers = [], []
    while len(prompts) < cfg.warmstart_batch_size:
        k = int(rng.integers(cfg.min_terms, cfg.warmstart_max_terms + 1))
        terms = rng.integers(1, cfg.max_value + 1, size=k).tolist()
        problem = problem_text(terms, cfg.modulus)
        if _split_of(problem) != "train":  # never show held-out problems
            continue
        prompts.append(template.replace("{problem}", problem))
        answers.append(teacher_solution(terms, rng, cfg) + IM_END)
    p_ids = tokenizer(prompts, add_special_tokens=False).input_ids
    a_ids = tokenizer(answers, add_special_tokens=False).input_ids
    seqs = [p + a for p, a in zip(p_ids, a_ids, strict=True)]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    for i, (p, s) in enumerate(zip(p_ids, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, len(p) : len(s)] = ids[i, len(p) : len(s)]  # loss on the completion only
    return ids, labels


def warm_start(model, tokenizer, cfg: ToyConfig, progress: bool = True) -> dict:
    """Supervised warm start (AdamW, linear warm-up then cosine decay); returns timing stats."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 7])
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.warmstart_lr, weight_decay=0.01, betas=(0.9, 0.98)
    )
    warm = max(1, cfg.warmstart_steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, cfg.warmstart_steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    t0, losses = time.perf_counter(), []
    template = prompt_text(tokenizer, "{problem}")
    bar = _progress(range(cfg.warmstart_steps), progress, "toy warm start")
    for _step in bar:
        ids, labels = _warmstart_batch(cfg, tokenizer, rng, template)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if hasattr(bar, "set_postfix") and _step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return {
        "steps": cfg.warmstart_steps,
        "seconds": round(time.perf_counter() - t0, 2),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
    }


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, mininterval=2.0)


# ----------------------------------------------------------------------------- quick evaluation
def local_correct(text: str, answer: str) -> bool:
    """Fast exact check used only for the build stats (the kit grades with polaris_lib.grading.grader)."""
    if THINK_END not in text:
        return False
    after = text.rsplit(THINK_END, 1)[1]
    return after.strip() == f"\\boxed{{{answer}}}"


def accuracy_by_difficulty(
    model, tokenizer, problems: pd.DataFrame, *, n: int, temperature: float, max_new_tokens: int
) -> dict:
    """{difficulty: accuracy} and overall, with the local exact check (build stats only)."""

    out = sample(
        model,
        tokenizer,
        problems,
        n=n,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        progress=False,
    )
    gold = dict(zip(problems.problem_id, problems.answer, strict=True))
    diff = dict(zip(problems.problem_id, problems.difficulty, strict=True))
    out["ok"] = [local_correct(t, gold[p]) for t, p in zip(out.text, out.problem_id, strict=True)]
    out["difficulty"] = out.problem_id.map(diff)
    by = out.groupby("difficulty").ok.mean().round(3)
    return {"all": round(float(out.ok.mean()), 3), **{int(k): float(v) for k, v in by.items()}}


# ----------------------------------------------------------------------------- build + cache
_ADDED_AFTER_V5 = {"guess_miss": "near"}
"""ToyConfig fields added after toy-v5's worlds were built, with the value those worlds used:
left out of the hash at that value, so the shipped worlds keep their names (no rebuild)."""


def config_hash(cfg: ToyConfig) -> str:
    """Content hash of everything that determines the built world."""
    fields = {
        k: v for k, v in dataclasses.asdict(cfg).items() if _ADDED_AFTER_V5.get(k, object()) != v
    }
    blob = json.dumps({"cfg": fields, "code": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """$POLARIS_CACHE/toy, else <repo>/.cache/toy."""
    env = os.environ.get("POLARIS_CACHE")
    if env:
        return Path(env) / "toy"
    return Path(__file__).resolve().parents[2] / ".cache" / "toy"


SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "toy"
"""Built worlds committed with the kit (made by `python -m polaris_lib.toy --ship`): a fresh
clone skips the warm start when a preset's ToyConfig hash has a shipped folder."""

SHIPPED_WORLDS = {"tiny": ToyConfig(), "tiny-hard": HARD_TOY}
"""The worlds committed with the kit: the demo's and the hard regime's (about 1.3 MB each)."""


def ship_toy_world(
    cfg: ToyConfig,
    dest: str | Path = SHIPPED_DIR,
    eval_per_difficulty: int = 16,
    keep: tuple[ToyConfig, ...] = (),
) -> Path:
    """Build `cfg`'s world with the kit's own code and copy it into the shipped assets; shipped
    worlds other than `cfg`'s and `keep`'s (stale ones) are removed."""
    built = build_toy_world(
        cfg, force=True, use_shipped=False, eval_per_difficulty=eval_per_difficulty
    )
    target = Path(dest) / built.name
    current = {f"toy-{config_hash(c)}" for c in keep}
    for old in Path(dest).glob("toy-*"):
        if old.name not in current:
            shutil.rmtree(old)
    shutil.copytree(built, target)
    return target


def build_toy_world(
    cfg: ToyConfig,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    eval_per_difficulty: int = 16,
    use_shipped: bool = True,
) -> Path:
    """Folder with the tokenizer + warm-started model (from_pretrained-loadable); cached by hash.

    A cache miss first looks for the same hash among the shipped worlds (SHIPPED_DIR) and copies
    it; only then does it build (tokenizer, model, warm start: minutes on 2 cores).

    Also writes warmstart.json: steps, seconds, and held-out accuracy by difficulty (greedy and
    T=1.0, `eval_per_difficulty` test problems per number of terms, exact-match check).
    """
    import torch

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / f"toy-{config_hash(cfg)}"
    if final.exists() and (final / "warmstart.json").exists() and not force:
        return final
    root.mkdir(parents=True, exist_ok=True)
    shipped = SHIPPED_DIR / final.name
    if use_shipped and not force and (shipped / "warmstart.json").exists():
        tmp = Path(tempfile.mkdtemp(prefix=".copying-", dir=root))
        shutil.copytree(shipped, tmp, dirs_exist_ok=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process installed it first
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        tokenizer = build_tokenizer()
        model = build_model(cfg, tokenizer)
        stats = warm_start(model, tokenizer, cfg, progress=progress)
        n_test = eval_per_difficulty * (cfg.max_terms - cfg.min_terms + 1)
        test = make_problems(cfg, "test", n_test, seed=1)
        budget = max(test.trace_len) + 8
        with torch.no_grad():
            stats["acc_T1"] = accuracy_by_difficulty(
                model, tokenizer, test, n=4, temperature=1.0, max_new_tokens=budget
            )
            stats["acc_greedy"] = accuracy_by_difficulty(
                model, tokenizer, test, n=1, temperature=0.0, max_new_tokens=budget
            )
        stats.update(config=dataclasses.asdict(cfg), code_version=CODE_VERSION)
        stats["n_params"] = sum(p.numel() for p in model.parameters())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "warmstart.json").write_text(json.dumps(stats, indent=2))
        if force and final.exists():
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same build first: keep theirs
            if not (final / "warmstart.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_toy_world(cfg: ToyConfig, cache_dir: str | Path | None = None):
    """(model, tokenizer) of the built toy world, CPU float32, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_toy_world(cfg, cache_dir)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()
    return model, tok


def warmstart_stats(path: str | Path) -> dict:
    """The warm-start stats json written next to a built toy world."""
    return json.loads((Path(path) / "warmstart.json").read_text())
