"""The stage-1 set (RECIPE.md §2): drop the problems the policy solves n/n, keep 0/n; and the
sanity views of a pool's pass rates (by MATH level, by toy term count, against POLARIS-53K's own
difficulty). Pure functions over the pass-rate table of polaris_lib/curate/run.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


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


def by_level(pass_rates: pd.DataFrame, pool: pd.DataFrame, column: str = "level") -> pd.DataFrame:
    """Mean pass rate per level (MATH-500's 1-5): a sanity check that harder levels score lower."""
    if column not in pool.columns:
        raise KeyError(f"pool has no {column!r} column (MATH-500 has 'level'); has {list(pool)}")
    m = pass_rates.merge(pool[["problem_id", column]], on="problem_id")
    g = m.groupby(column)
    return pd.DataFrame(
        {
            "problems": g.size(),
            "pass_rate": g.pass_rate.mean(),
            "solved_none": g.k.apply(lambda k: int((k == 0).sum())),
        }
    ).reset_index()


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


def sanity_figure_name(view: str) -> str:
    """File name of a sanity view's figure."""
    return (
        "fig_difficulty_vs_reference.png" if view == "reference" else f"fig_pass_rate_by_{view}.png"
    )
