"""Evaluation and probe metrics (RECIPE §1 distinct-4, §5 truncation rate, §7 avg@k / pass@k).

Pure functions over plain arrays, and summary tables of a tidy responses table (one row per
sampled response: checkpoint, benchmark, problem_id, sample_idx, text, n_tokens, truncated,
correct, reason). Every number in notebooks 04-05 and the report comes from these functions, so a
regraded table re-summarises. The 95% interval of avg@k is a percentile bootstrap over *problems*
(`bootstrap_ci`) of each problem's mean over its k samples: problems are what a benchmark draws,
samples are not independent of their problem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("problem_id", "sample_idx", "correct")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Codex): 1 - C(n-c, k)/C(n, k), as a stable running product.

    >>> round(pass_at_k(4, 1, 2), 4)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # C(n-c,k)/C(n,k) = prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials, no cancellation.
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def distinct_n(texts: Sequence[str], n: int = 4) -> float:
    """Unique / total whitespace n-grams pooled over one problem's responses (POLARIS diversity).

    >>> distinct_n(["a b c d e", "a b c d x"], n=4)  # 4 grams, 3 unique
    0.75
    """
    grams = [
        tuple(toks[i : i + n])
        for toks in (t.split() for t in texts)
        for i in range(len(toks) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else float("nan")


def bootstrap_ci(
    per_problem_scores: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over problems (resampling problems, not samples).

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    x = np.asarray(per_problem_scores, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


Z95 = 1.959963984540054
"""The two-sided 95% standard-normal quantile."""


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: never the degenerate [0, 0] or [1, 1].

    Used where the bootstrap has nothing to resample: a set in which every problem scored 0 (or
    every one scored 1) has a bootstrap interval of width zero, which claims certainty that 30
    problems cannot give. Wilson's interval for 0 of n is [0, z^2 / (n + z^2)].

    >>> [round(x, 4) for x in wilson_interval(0, 30)]  # 3.8415 / 33.8415
    [0.0, 0.1135]
    """
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def binomial_rule(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary table (avg, ci_lo, ci_hi, problems) whose all-0 / all-1 rows get Wilson intervals.

    Rows where every problem scored 0 (or 1) have a zero-width bootstrap interval; those rows get
    `wilson_interval` over their problems instead, and a `ci_rule` column says which rule each
    row's interval follows. Other rows are unchanged. Works on stored tables of older runs too.
    """
    if summary.empty or not {"avg", "ci_lo", "ci_hi"} <= set(summary.columns):
        return summary
    out = summary.copy()
    n = out["problems"] if "problems" in out else pd.Series(np.nan, index=out.index)
    degenerate = (out["ci_hi"] - out["ci_lo"]).abs() < 1e-12
    edge = degenerate & out["avg"].isin([0.0, 1.0]) & (n.fillna(0) >= 1)
    rules = pd.Series("bootstrap", index=out.index, dtype=object)
    for i in out.index[edge]:
        ones = int(out.at[i, "avg"])
        lo, hi = wilson_interval(ones * int(n[i]), int(n[i]))
        out.at[i, "ci_lo"], out.at[i, "ci_hi"] = lo, hi
        rules[i] = f"Wilson (all {ones} over {int(n[i])} problems)"
    out["ci_rule"] = rules
    out.attrs = {**summary.attrs, "interval": INTERVAL_METHOD + BINOMIAL_NOTE}
    return out


def truncation_rate(truncated: Sequence[bool]) -> float:
    """Fraction of responses cut at the length limit.

    >>> truncation_rate([True, False, False, False])
    0.25
    """
    return float(np.mean(np.asarray(truncated, dtype=bool))) if len(truncated) else float("nan")


def _check(df: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"samples table lacks columns {missing}; has {list(df.columns)}")


def per_problem(df: pd.DataFrame) -> pd.DataFrame:
    """One row per problem: n samples, c correct (None/NaN ignored), mean correctness."""
    _check(df, REQUIRED_COLUMNS)
    correct = pd.to_numeric(df["correct"], errors="coerce")
    g = correct.groupby(df["problem_id"], sort=True)
    return pd.DataFrame({"n": g.count(), "c": g.sum().astype(int), "accuracy": g.mean()})


# ----------------------------------------------------------------------------- responses tables
INTERVAL_METHOD = "95% percentile bootstrap over problems (per-problem mean over k samples)"
BINOMIAL_NOTE = (
    "; a set where every problem scored 0 (or 1) gets a 95% Wilson interval over problems"
)


PAIR = ["checkpoint", "benchmark"]


FORMAT_REASONS = ("no_think_close", "no_boxed", "answer_too_long")
"""Grader reasons that mean a finished response broke the answer format (grading/grader.py)."""


def _samples_per_problem(g: pd.DataFrame) -> int:
    """k of one pair; every problem must have the same number of distinct samples."""
    dup = g[g.duplicated(["problem_id", "sample_idx"])]
    if len(dup):
        raise ValueError(
            f"duplicate (problem_id, sample_idx) rows: {dup.problem_id.head(5).tolist()}"
        )
    counts = g.groupby("problem_id").size()
    if counts.nunique() > 1:
        short = counts[counts < counts.max()].index[:5].tolist()
        raise ValueError(f"problems with fewer than {counts.max()} samples: {short}")
    return int(counts.iloc[0])


def summarize(responses: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (checkpoint, benchmark): avg@k, interval, pass@k, solve counts, lengths, rates.

    format_error_rate counts finished (untruncated) responses the grader rejected for format;
    truncated responses are counted by truncation_rate instead; ungraded = gold unparseable.
    """
    rows = []
    for (ck, b), g in responses.groupby(PAIR, sort=False):
        k = _samples_per_problem(g)
        pp = per_problem(g)
        lo, hi = bootstrap_ci(pp["accuracy"].to_numpy(), n_boot=n_boot, seed=seed)
        length = g["n_tokens"].astype(float)
        trunc = g["truncated"].astype(bool)
        fmt = g["reason"].isin(FORMAT_REASONS) & ~trunc
        rows.append(
            dict(
                checkpoint=ck,
                benchmark=b,
                k=k,
                problems=len(pp),
                responses=len(g),
                avg=float(pp["accuracy"].mean()),
                ci_lo=lo,
                ci_hi=hi,
                pass_at_k=_mean_pass(pp, k),
                solve_none=int((pp["c"] == 0).sum()),
                solve_all=int((pp["c"] == pp["n"]).sum()),
                mean_len=float(length.mean()),
                median_len=float(length.median()),
                p90_len=float(length.quantile(0.9)),
                max_len=int(length.max()),
                truncation_rate=float(trunc.mean()),
                format_error_rate=float(fmt.mean()),
                ungraded=int(g["correct"].isna().sum()),
            )
        )
    out = binomial_rule(pd.DataFrame(rows))
    out.attrs["interval"] = INTERVAL_METHOD + BINOMIAL_NOTE
    return out


def _mean_pass(pp: pd.DataFrame, k: int) -> float:
    ok = pp[pp["n"] >= k]
    vals = [pass_at_k(int(n), int(c), k) for n, c in zip(ok["n"], ok["c"], strict=True)]
    return float(np.mean(vals)) if vals else float("nan")


def pass_at_k_curve(responses: pd.DataFrame) -> pd.DataFrame:
    """pass@k for k = 1..n per pair (unbiased estimator, mean over problems)."""
    rows = []
    for (ck, b), g in responses.groupby(PAIR, sort=False):
        pp = per_problem(g)
        for k in range(1, int(pp["n"].max()) + 1):
            rows.append(dict(checkpoint=ck, benchmark=b, k=k, pass_at_k=_mean_pass(pp, k)))
    return pd.DataFrame(rows)


def per_problem_table(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, benchmark, problem): samples, correct, accuracy, mean length."""
    g = responses.assign(correct=pd.to_numeric(responses["correct"], errors="coerce"))
    t = g.groupby([*PAIR, "problem_id"], sort=False).agg(
        n=("correct", "count"),
        c=("correct", "sum"),
        accuracy=("correct", "mean"),
        mean_len=("n_tokens", "mean"),
        truncated=("truncated", "mean"),
    )
    return t.reset_index().astype({"c": int})


def length_bucket(n_tokens, length: int) -> pd.Series:
    """Response-length bucket against a length L: '< L/2', 'L/2-L', '> L' (the paper's YaRN cut)."""
    n = pd.Series(np.asarray(n_tokens), dtype=float)
    labels = bucket_labels(length)
    return pd.Series(np.select([n < length / 2, n <= length], labels[:2], labels[2]), index=n.index)


def bucket_labels(length: int) -> list[str]:
    """The three bucket names for a length L, in order."""
    return [f"< {length / 2:g}", f"{length / 2:g}-{length:g}", f"> {length:g}"]


def length_bucket_accuracy(responses: pd.DataFrame, length: int, by=PAIR) -> pd.DataFrame:
    """Accuracy and share of responses per length bucket (L = `length` tokens) within each group."""
    df = responses.assign(bucket=length_bucket(responses["n_tokens"], length).to_numpy())
    t = df.groupby([*by, "bucket"], sort=False)["correct"].agg(n="size", accuracy="mean")
    t = t.reset_index()
    t["share"] = t["n"] / t.groupby(list(by))["n"].transform("sum")
    t["bucket"] = pd.Categorical(t["bucket"], bucket_labels(length), ordered=True)
    order = t.groupby(list(by), sort=False).ngroup()  # groups keep their order of appearance
    return (
        t.assign(_g=order).sort_values(["_g", "bucket"]).drop(columns="_g").reset_index(drop=True)
    )
