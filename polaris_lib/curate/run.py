"""Difficulty curation (RECIPE.md §2): pass rate k/n by the policy being trained, and the drops.

- Pass rate: n samples (paper: 8) per pool problem at the probe's chosen temperature, graded by
  polaris_lib.grading.grader. Work goes in chunks of `checkpoint_every` problems; each finished chunk is
  written atomically, so a crash at 60% resumes at 60%.
- Stage-1 set: drop problems solved n/n (they teach GRPO nothing), keep 0/n (RECIPE §2: dropping
  everything above 4/8 hurt). The histogram over 0/n..n/n is the J / mirrored-J figure.
- Between stages (`easy_drop`, polaris_lib/training/easy_drop.py): drop problems whose mean reward over
  the stage's reward log is above the threshold (paper: 0.9).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib.artifacts import files as artifacts
from polaris_lib.probe.run import fingerprint, grade, world_key

log = logging.getLogger(__name__)

ARTIFACTS = [
    "config.json", "metrics.json", "pass_rates.parquet", "curated.parquet", "buckets.parquet",
    "fig_pass_rates.png",
]  # fmt: skip
"""What a finished curation step holds (finish_step checks them)."""
PASS_COLUMNS = ["problem_id", "k", "n", "pass_rate", "mean_tokens", "truncation_rate"]


# ----------------------------------------------------------------------------- inputs
def pool_problems(run) -> pd.DataFrame:
    """The curation pool: toy 'train' split, or the catalog pool (seeded sample of max_problems)."""
    from polaris_lib.data import catalog as data

    cap = run.curation.max_problems
    if run.curation.pool == "toy":
        return data.load_dataset("toy", split="train", n=cap or 256, toy_cfg=run.toy, seed=run.seed)
    df = data.load_dataset(run.curation.pool)
    if cap and cap < len(df):
        df = df.sample(n=cap, random_state=run.seed).sort_index().reset_index(drop=True)
    return df


def curation_temperature(run) -> tuple[float, str]:
    """Stage 1's temperature: the stage config's if set, else 01 stage 1's chosen temperature."""
    if run.stage(1).temperature is not None:
        return float(run.stage(1).temperature), "stages[0].temperature (config)"
    path = artifacts.step_dir(run.run_dir, artifacts.PROBE, 1, create=False) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(
            f"curation samples at the probe's chosen temperature, but {path} is missing: run "
            "01_temperature_probe with STAGE=1 first, or set stages.0.temperature in OVERRIDES"
        )
    return float(artifacts.read_json(path)["probe/chosen_temperature"]), str(path)


# ----------------------------------------------------------------------------- pass rates
def estimate_pass_rates(
    sample_fn: Callable[[pd.DataFrame, int], pd.DataFrame],
    problems: pd.DataFrame,
    *,
    n: int,
    grader,
    out: str | Path,
    checkpoint_every: int,
    key: dict,
    on_chunk: Callable[[int, int], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """k/n per problem, chunk by chunk; finished chunks (same fingerprint) are reused, not redone.

    `sample_fn(chunk_problems, chunk_index)` returns polaris_lib.policy.sampling.sample's table with n
    samples per row; `on_chunk(done, total)` runs after each chunk is safely on disk.
    """
    if problems.problem_id.duplicated().any():
        dup = problems.problem_id[problems.problem_id.duplicated()].unique()[:5].tolist()
        raise ValueError(f"pool has duplicate problem ids (pass rates need stable ids): {dup}")
    part = Path(out) / "partial"
    part.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(problems), checkpoint_every))
    bar = _bar(len(problems), progress)
    tables = []
    for c, s in enumerate(starts):
        chunk = problems.iloc[s : s + checkpoint_every]
        fp = fingerprint(chunk=c, ids=list(chunk.problem_id), n=n, **key)
        stem = part / f"chunk_{c:05d}"
        meta = stem.with_suffix(".json")
        if meta.exists() and artifacts.read_json(meta).get("fingerprint") == fp:
            tables.append(pd.read_parquet(stem.with_suffix(".parquet")))
        else:
            graded = grade(sample_fn(chunk, c), chunk, grader)
            table = summarize_samples(graded, chunk.problem_id)
            artifacts.write_parquet(stem.with_suffix(".parquet"), table)
            artifacts.write_json(meta, {"fingerprint": fp, "problems": len(chunk)})  # last = done
            tables.append(table)
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
    model, tokenizer, run, out: str | Path, problems: pd.DataFrame, temperature: float, *,
    checkpoint: str | None = None, grader=None, on_chunk=None, progress: bool = True,
) -> pd.DataFrame:  # fmt: skip
    """Pass rates of `problems` with the policy at `temperature` (batched, resumable)."""
    from polaris_lib.grading import grader as rewards
    from polaris_lib.policy import sampling

    cur = run.curation
    grader = grader or rewards.default_grader(thinking=run.model.thinking)
    top_p, top_k = run.stage(1).top_p, run.stage(1).top_k  # sample as stage 1 will roll out

    def sample_fn(chunk: pd.DataFrame, c: int) -> pd.DataFrame:
        return sampling.sample(
            model, tokenizer, chunk, n=cur.samples_per_problem, temperature=temperature,
            top_p=top_p, top_k=top_k, max_new_tokens=cur.max_new_tokens,
            seed=run.seed * 1_000_003 + c, suffix=run.model.instruction_suffix, progress=False,
        )  # fmt: skip

    key = dict(
        model=run.model.name_or_path, checkpoint=checkpoint, temperature=temperature,
        top_p=top_p, top_k=top_k, max_new_tokens=cur.max_new_tokens, seed=run.seed,
        suffix=run.model.instruction_suffix, world=world_key(run),
    )  # fmt: skip
    return estimate_pass_rates(
        sample_fn, problems, n=cur.samples_per_problem, grader=grader, out=out,
        checkpoint_every=cur.checkpoint_every, key=key, on_chunk=on_chunk, progress=progress,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the stage-1 set
def bucket_table(pass_rates: pd.DataFrame, n: int, drop_solved_all: bool = True) -> pd.DataFrame:
    """Problems per bucket k = 0..n, and how many each bucket keeps and drops."""
    counts = pass_rates.k.value_counts().reindex(range(n + 1), fill_value=0)
    dropped = [int(c) if (k == n and drop_solved_all) else 0 for k, c in counts.items()]
    return pd.DataFrame(
        {
            "k": range(n + 1),
            "bucket": [f"{k}/{n}" for k in range(n + 1)],
            "problems": counts.to_numpy(),
            "kept": counts.to_numpy() - np.array(dropped),
            "dropped": dropped,
        }
    )


def select(
    pool: pd.DataFrame, pass_rates: pd.DataFrame, drop_solved_all: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curated, dropped): pool rows with their k, n, pass_rate; n/n problems dropped if asked."""
    rates = pass_rates[["problem_id", "k", "n", "pass_rate"]]
    merged = pool.drop(columns=["k", "n", "pass_rate"], errors="ignore").merge(
        rates, on="problem_id", how="inner", validate="one_to_one"
    )
    if len(merged) != len(pass_rates):
        lost = sorted(set(pass_rates.problem_id) - set(pool.problem_id))[:5]
        raise ValueError(f"pass rates for problems not in the pool: {lost}")
    solved_all = (merged.k == merged.n) & drop_solved_all
    return merged[~solved_all].reset_index(drop=True), merged[solved_all].reset_index(drop=True)


# ----------------------------------------------------------------------------- sanity views
def by_level(pass_rates: pd.DataFrame, pool: pd.DataFrame, column: str = "level") -> pd.DataFrame:
    """Mean pass rate per level (MATH-500's 1-5): a sanity check that harder levels score lower."""
    if column not in pool.columns:
        raise KeyError(f"pool has no {column!r} column (MATH-500 has 'level'); has {list(pool)}")
    m = pass_rates.merge(pool[["problem_id", column]], on="problem_id")
    g = m.groupby(column)
    return pd.DataFrame(
        {"problems": g.size(), "pass_rate": g.pass_rate.mean(), "solved_none": g.k.apply(
            lambda k: int((k == 0).sum()))}
    ).reset_index()  # fmt: skip


def parse_reference_difficulty(value) -> float:
    """POLARIS-53K's `difficulty` (R1-Distill-7B's pass rate) as a fraction: '3/8' -> 0.375."""
    if value is None:
        return float("nan")
    if isinstance(value, str):
        s = value.strip()
        if "/" in s:
            k, n = s.split("/", 1)
            return float(k) / float(n)
        value = float(s) if s else float("nan")
    value = float(value)
    return value / 8.0 if value > 1.0 else value  # a bare count k is out of 8 (their n)


def compare_difficulty(pass_rates: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Our pass rate beside the pool's own `difficulty` column (POLARIS-53K), per problem."""
    if "difficulty" not in pool.columns:
        raise KeyError("pool has no 'difficulty' column to compare with (POLARIS-53K has one)")
    ref = pool[["problem_id", "difficulty"]].assign(
        reference_pass_rate=[parse_reference_difficulty(v) for v in pool.difficulty]
    )
    return pass_rates[["problem_id", "k", "n", "pass_rate"]].merge(ref, on="problem_id")


def save(
    out: str | Path, pool: pd.DataFrame, pass_rates: pd.DataFrame, curated: pd.DataFrame,
    buckets: pd.DataFrame, temperature: float,
) -> dict:  # fmt: skip
    """pass_rates.parquet (with pool columns), curated.parquet, buckets.parquet and the metrics."""
    out = Path(out)
    full = pass_rates.merge(pool.drop(columns=["k", "n", "pass_rate"], errors="ignore"),
                            on="problem_id", how="left")  # fmt: skip
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


def sanity_tables(pool_name: str, pass_rates: pd.DataFrame, pool: pd.DataFrame) -> dict:
    """The pool's sanity views: pass rate by MATH level, by toy term count, vs POLARIS difficulty."""
    views = {}
    if "level" in pool.columns:
        views["level"] = by_level(pass_rates, pool, "level")
    if pool_name == "toy":  # the toy's `difficulty` is its number of terms, not a pass rate
        views["difficulty"] = by_level(pass_rates, pool, "difficulty")
    elif "difficulty" in pool.columns:
        views["reference"] = compare_difficulty(pass_rates, pool)
    return views


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


def sanity_figure_name(view: str) -> str:
    """File name of a sanity view's figure."""
    return (
        "fig_difficulty_vs_reference.png" if view == "reference" else f"fig_pass_rate_by_{view}.png"
    )


def describe(run, temperature: float) -> str:
    """Figure caption: preset, model, pool, seed, temperature, samples per problem."""
    c = run.curation
    return (
        f"preset {run.preset} · model {run.model.name_or_path} · pool {c.pool} · seed {run.seed} · "
        f"T={temperature:g} · {c.samples_per_problem} samples/problem · max {c.max_new_tokens} tokens"
    )
