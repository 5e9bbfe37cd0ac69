"""Evaluation and probe metrics (RECIPE §1 distinct-4, §5 truncation rate, §7 avg@k / pass@k).

Pure functions over plain arrays, plus thin wrappers over a tidy samples table with columns
``problem_id, sample_idx, correct, text, truncated`` (one row per sampled response).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

REQUIRED = ("problem_id", "sample_idx", "correct")


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


def avg_at_k(correct: Sequence[Sequence[float]]) -> float:
    """Mean over problems of each problem's mean correctness over its k samples (None rows skipped).

    >>> avg_at_k([[1, 0, 0, 1], [1, 1, 1, 1]])
    0.75
    """
    per_problem = [np.nanmean(np.asarray(row, dtype=float)) for row in correct if len(row)]
    return float(np.nanmean(per_problem)) if per_problem else float("nan")


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


def has_boxed(text: str) -> bool:
    """Whether a response contains any ``\\boxed`` (the format the reward requires)."""
    return "\\boxed" in text


def format_error_rate(texts: Sequence[str]) -> float:
    r"""Fraction of responses without any ``\boxed``.

    >>> format_error_rate(["\\boxed{1}", "no box"])
    0.5
    """
    return float(np.mean([not has_boxed(t) for t in texts])) if len(texts) else float("nan")


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
    _check(df, REQUIRED)
    correct = pd.to_numeric(df["correct"], errors="coerce")
    g = correct.groupby(df["problem_id"], sort=True)
    return pd.DataFrame({"n": g.count(), "c": g.sum().astype(int), "accuracy": g.mean()})


def summarize(df: pd.DataFrame, ks: Sequence[int] = (1,), n_boot: int = 1000) -> dict[str, float]:
    """avg@k, pass@k, CI, solve-none/all, distinct-4, truncation and format-error rates of a table.

    k for avg@k is the largest sample count seen; pass@k skips problems with fewer than k samples.
    """
    pp = per_problem(df)
    k_all = int(pp["n"].max()) if len(pp) else 0
    lo, hi = bootstrap_ci(pp["accuracy"].to_numpy(), n_boot=n_boot)
    out = {
        f"avg@{k_all}": float(pp["accuracy"].mean()),
        "avg_ci_lo": lo,
        "avg_ci_hi": hi,
        "solve_none": int((pp["c"] == 0).sum()),
        "solve_all": int((pp["c"] == pp["n"]).sum()),
        "problems": len(pp),
        "ungraded": int(pd.to_numeric(df["correct"], errors="coerce").isna().sum()),
    }
    for k in ks:
        ok = pp[pp["n"] >= k]
        vals = [pass_at_k(int(n), int(c), k) for n, c in zip(ok["n"], ok["c"], strict=True)]
        out[f"pass@{k}"] = float(np.mean(vals)) if vals else float("nan")
    if "text" in df.columns:
        texts = df["text"].fillna("").astype(str)
        d4 = [distinct_n(list(t), 4) for _, t in texts.groupby(df["problem_id"], sort=True)]
        out["distinct4"] = float(np.nanmean(d4)) if len(d4) else float("nan")
        out["format_error_rate"] = format_error_rate(texts)
    if "truncated" in df.columns:
        out["truncation_rate"] = truncation_rate(df["truncated"])
    return out
