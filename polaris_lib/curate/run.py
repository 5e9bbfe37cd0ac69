"""Difficulty curation (RECIPE.md §2): pass rate k/n by the policy being trained, and the drops.

- Pass rate: n samples (paper: 8) per pool problem at the probe's chosen temperature, graded by
  polaris_lib.grading.grader. Work goes in chunks of `checkpoint_every` problems; each finished chunk is
  written atomically, so a crash at 60% resumes at 60%.
- Stage-1 set (polaris_lib/curate/select.py): drop problems solved n/n (they teach GRPO nothing), keep 0/n (RECIPE §2: dropping
  everything above 4/8 hurt). The histogram over 0/n..n/n is the J / mirrored-J figure.
- Between stages (`easy_drop`, polaris_lib/training/easy_drop.py): drop problems whose mean reward over
  the stage's reward log is above the threshold (paper: 0.9).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts, data
from polaris_lib.artifacts.resume import PartStore
from polaris_lib.figure_style import run_caption
from polaris_lib.policy.load import policy_key
from polaris_lib.policy.rollouts import rollout

log = logging.getLogger(__name__)

ARTIFACTS = [
    "config.json",
    "metrics.json",
    "pass_rates.parquet",
    "curated.parquet",
    "buckets.parquet",
    "fig_pass_rates.png",
]
"""What a finished curation step holds (finish_step checks them)."""
PASS_COLUMNS = ["problem_id", "k", "n", "pass_rate", "mean_tokens", "truncation_rate"]


# ----------------------------------------------------------------------------- inputs
def pool_problems(run) -> pd.DataFrame:
    """The curation pool: toy 'train' split, or the catalog pool (seeded sample of max_problems).

    Refused (data.DataOverlapError naming the ids) when it shares a problem with a benchmark the
    run evaluates: a run must not train on its own test set.
    """

    cap = run.curation.max_problems
    if run.curation.pool == "toy":
        terms = dict(zip(("min_terms", "max_terms"), run.curation.toy_terms, strict=False))
        df = data.load_dataset(
            "toy", split="train", n=cap or 256, toy_cfg=run.toy, seed=run.seed, **terms
        )
    else:
        df = data.load_dataset(run.curation.pool)
        if cap and cap < len(df):
            df = df.sample(n=cap, random_state=run.seed).sort_index().reset_index(drop=True)
    data.check_no_overlap(run, df)
    return df


# ----------------------------------------------------------------------------- pass rates
def estimate_pass_rates(
    score_fn: Callable[[pd.DataFrame, int], pd.DataFrame],
    problems: pd.DataFrame,
    *,
    out: str | Path,
    checkpoint_every: int,
    key: dict,
    on_chunk: Callable[[int, int], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """k/n per problem, chunk by chunk; finished chunks (same fingerprint) are reused, not redone.

    `score_fn(chunk_problems, chunk_index)` returns the graded samples
    (polaris_lib.policy.rollouts.rollout's table) with n per row; `on_chunk(done, total)` runs
    after each chunk is safely on disk.
    """
    if problems.problem_id.duplicated().any():
        dup = problems.problem_id[problems.problem_id.duplicated()].unique()[:5].tolist()
        raise ValueError(f"pool has duplicate problem ids (pass rates need stable ids): {dup}")
    store = PartStore(Path(out) / "partial")
    starts = list(range(0, len(problems), checkpoint_every))
    bar = _bar(len(problems), progress)
    tables = []
    for c, s in enumerate(starts):
        chunk = problems.iloc[s : s + checkpoint_every]
        name, part_key = f"chunk_{c:05d}", dict(chunk=c, ids=list(chunk.problem_id), **key)
        if store.done(name, part_key):
            tables.append(store.read(name))
        else:
            table = summarize_samples(score_fn(chunk, c), chunk.problem_id)
            tables.append(store.write(name, table, part_key, problems=len(chunk)))
        if bar is not None:
            bar.update(len(chunk))
        if on_chunk is not None:
            on_chunk(c + 1, len(starts))
    if bar is not None:
        bar.close()
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PASS_COLUMNS)


def summarize_samples(graded: pd.DataFrame, order) -> pd.DataFrame:
    """Per problem: k correct of n, pass rate, mean response tokens, truncation rate."""
    g = graded.assign(correct=graded.correct.fillna(0.0)).groupby("problem_id")
    table = pd.DataFrame(
        {
            "k": g.correct.sum().astype(int),
            "n": g.size(),
            "mean_tokens": g.n_tokens.mean(),
            "truncation_rate": g.truncated.mean(),
        }
    )
    table["pass_rate"] = table.k / table.n
    return table.reindex(list(order)).reset_index()[PASS_COLUMNS]


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="pass rates", unit="problem")


def run_curation(
    model,
    tokenizer,
    run,
    out: str | Path,
    problems: pd.DataFrame,
    temperature: float,
    *,
    checkpoint: str | None = None,
    grader=None,
    on_chunk=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Pass rates of `problems` with the policy at `temperature` (batched, resumable)."""
    cur = run.curation
    top_p, top_k = run.stage(1).top_p, run.stage(1).top_k  # sample as stage 1 will roll out

    def score_fn(chunk: pd.DataFrame, c: int) -> pd.DataFrame:
        graded, _ = rollout(
            model,
            tokenizer,
            chunk,
            n=cur.samples_per_problem,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=cur.max_new_tokens,
            seed=run.seed * 1_000_003 + c,
            suffix=run.model.instruction_suffix,
            thinking=run.model.thinking,
            grader=grader,
        )
        return graded

    key = dict(
        **policy_key(run, checkpoint),
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=cur.max_new_tokens,
        seed=run.seed,
        n=cur.samples_per_problem,
        suffix=run.model.instruction_suffix,
    )
    return estimate_pass_rates(
        score_fn,
        problems,
        out=out,
        checkpoint_every=cur.checkpoint_every,
        key=key,
        on_chunk=on_chunk,
        progress=progress,
    )


# ----------------------------------------------------------------------------- artifacts


def save(
    out: str | Path,
    pool: pd.DataFrame,
    pass_rates: pd.DataFrame,
    curated: pd.DataFrame,
    buckets: pd.DataFrame,
    temperature: float,
) -> dict:
    """pass_rates.parquet (with pool columns), curated.parquet, buckets.parquet and the metrics."""
    out = Path(out)
    full = pass_rates.merge(
        pool.drop(columns=["k", "n", "pass_rate"], errors="ignore"), on="problem_id", how="left"
    )
    artifacts.write_parquet(out / "pass_rates.parquet", full)
    artifacts.write_parquet(out / "curated.parquet", curated)
    artifacts.write_parquet(out / "buckets.parquet", buckets)
    m = {
        "curate/pool_size": len(pass_rates),
        "curate/kept": len(curated),
        "curate/kept_frac": len(curated) / max(len(pass_rates), 1),
        "curate/dropped_solved_all": int(buckets.dropped.sum()),
        "curate/solved_none": int(buckets.problems.iloc[0]),
        "curate/mean_pass_rate": float(pass_rates.pass_rate.mean()),
        "curate/truncation_rate": float(pass_rates.truncation_rate.mean()),
        "curate/temperature": temperature,
        **{f"curate/bucket_{r.k}": int(r.problems) for r in buckets.itertuples()},
    }
    return artifacts.update_metrics(out, m)


def check_artifacts(step: str | Path) -> dict:
    """Validate a finished curation folder; returns its metrics."""
    step = Path(step)
    rates = pd.read_parquet(step / "pass_rates.parquet")
    curated = pd.read_parquet(step / "curated.parquet")
    m = artifacts.read_json(step / "metrics.json")
    if missing := [c for c in PASS_COLUMNS + ["problem", "answer"] if c not in rates.columns]:
        raise ValueError(f"{step}/pass_rates.parquet lacks {missing}")
    if rates.problem_id.duplicated().any() or not set(curated.problem_id) <= set(rates.problem_id):
        raise ValueError(f"{step}: curated ids must be unique pool ids")
    kept, dropped = m["curate/kept"], m["curate/dropped_solved_all"]
    if kept != len(curated) or m["curate/pool_size"] != len(rates) or kept + dropped != len(rates):
        raise ValueError(f"{step}: metrics disagree with the tables")
    return m


def figure_caption(run, temperature: float) -> str:
    """Figure caption: preset, model, seed, pool, temperature, samples per problem."""
    c = run.curation
    return run_caption(
        run,
        f"pool {c.pool}",
        f"T={temperature:g}",
        f"{c.samples_per_problem} samples/problem",
        f"max {c.max_new_tokens} tokens",
    )
