"""Held-out accuracy of a stage's policy versus the warm start (notebook 03, section 6).

Same held-out problems, samples per problem (eval.samples) and evaluation temperature for both
policies; the accuracy intervals are 95% percentile bootstraps over problems and the gain's
interval is paired (bootstrap of per-problem differences). For the toy world the held-out set is
the generated test split, disjoint from training problems by construction (toy.py).
"""

from __future__ import annotations

import json

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.artifacts import GRPO_STAGE, step_dir
from polaris_lib.config.sections import RunConfig
from polaris_lib.data import load_dataset
from polaris_lib.metrics import bootstrap_ci
from polaris_lib.policy.load import load_policy
from polaris_lib.policy.rollouts import rollout
from polaris_lib.policy.sampling import loaded_model

DEFAULT_TOY_HELDOUT = 64
"""Held-out toy problems when eval.max_problems is 0 (the toy test split is generated)."""


def heldout_problems(run: RunConfig) -> pd.DataFrame:
    """Held-out problems for the before/after check: the toy test split, or eval's 1st benchmark."""

    n = run.eval.max_problems or None
    if run.model.name_or_path == "toy":
        n = n or DEFAULT_TOY_HELDOUT
        return load_dataset("toy", split="test", toy_cfg=run.toy, n=n, seed=run.seed)
    return load_dataset(run.eval.benchmarks[0], limit=n)


def heldout_scores(run: RunConfig, checkpoint: str | None, problems: pd.DataFrame) -> pd.DataFrame:
    """Per-problem accuracy (avg@k at the eval temperature) of a checkpoint (None = base)."""
    e = run.eval
    k = e.k_for("toy" if run.model.name_or_path == "toy" else e.benchmarks[0])
    with loaded_model(load_policy(run, checkpoint)) as m:
        s, _ = rollout(
            m.model,
            m.tokenizer,
            problems,
            n=k,
            temperature=e.temperature,
            top_p=e.top_p,
            top_k=e.top_k,
            max_new_tokens=e.max_new_tokens,
            seed=run.seed,
            suffix=run.model.instruction_suffix,
            thinking=run.model.thinking,
            batch_size=256,  # fewer, wider generate calls: the per-token Python overhead dominates
        )
    per = s.groupby("problem_id", sort=False).agg(
        accuracy=("correct", "mean"), truncation=("truncated", "mean")
    )
    return per.reset_index().assign(checkpoint=checkpoint or "base", k=k)


def compare_heldout(run: RunConfig, before: pd.DataFrame, after: pd.DataFrame) -> dict:
    """Accuracy after vs before with 95% bootstrap intervals over problems (paired for the gain)."""

    m = before.merge(after, on="problem_id", suffixes=("_before", "_after"))
    diff = m.accuracy_after - m.accuracy_before
    nb = run.eval.n_bootstrap
    lo, hi = bootstrap_ci(m.accuracy_after, n_boot=nb, seed=run.seed)
    blo, bhi = bootstrap_ci(m.accuracy_before, n_boot=nb, seed=run.seed)
    glo, ghi = bootstrap_ci(diff, n_boot=nb, seed=run.seed)
    return {
        "heldout_acc": float(m.accuracy_after.mean()),
        "heldout_acc_lo": lo,
        "heldout_acc_hi": hi,
        "heldout_acc_warmstart": float(m.accuracy_before.mean()),
        "heldout_acc_warmstart_lo": blo,
        "heldout_acc_warmstart_hi": bhi,
        "heldout_gain": float(diff.mean()),
        "heldout_gain_lo": glo,
        "heldout_gain_hi": ghi,
        "heldout_problems": int(len(m)),
        "heldout_k": int(after.k.iloc[0]),
        "heldout_temperature": run.eval.temperature,
    }


def warmstart_scores(run: RunConfig, problems: pd.DataFrame) -> pd.DataFrame:
    """Base-model held-out scores, computed once per run and cached in stage 1's folder."""
    path = step_dir(run.run_dir, GRPO_STAGE, 1) / "heldout_warmstart.parquet"
    key = json.dumps([sorted(problems.problem_id), run.eval.temperature, run.eval.max_new_tokens])
    if path.exists():
        cached = pd.read_parquet(path)
        if "key" in cached and len(cached) and cached.key.iloc[0] == key:
            return cached.drop(columns="key")
    scores = heldout_scores(run, None, problems)
    artifacts.write_parquet(path, scores.assign(key=key))
    return scores


def heldout_table(metrics: dict) -> pd.DataFrame:
    """Two rows (warm start, after this stage) for the held-out figure."""
    m = metrics
    return pd.DataFrame(
        [
            (
                "warm start",
                m["heldout_acc_warmstart"],
                m["heldout_acc_warmstart_lo"],
                m["heldout_acc_warmstart_hi"],
            ),
            ("after this stage", m["heldout_acc"], m["heldout_acc_lo"], m["heldout_acc_hi"]),
        ],
        columns=["label", "accuracy", "lo", "hi"],
    )
