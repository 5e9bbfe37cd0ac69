"""Evaluation and probe metrics (RECIPE §1 distinct-4, §5 truncation rate, §7 avg@k / pass@k).

Pure functions over plain arrays, and summary tables of a tidy responses table (one row per
sampled response: checkpoint, benchmark, problem_id, sample_idx, text, n_tokens, truncated,
correct, reason). Every number in notebooks 04-05 and the report comes from these functions, so a
regraded table re-summarises. The 95% interval of avg@k is a percentile bootstrap over *problems*
(`bootstrap_ci`) of each problem's mean over its k samples: problems are what a benchmark draws,
samples are not independent of their problem.

Two error sources, kept apart (issue 15): the interval *over problems* answers "how would this
checkpoint score on another draw of problems like these?"; the interval *with the problems held
fixed* (`sampling_interval`, sampling noise only) answers "does it score 0.812 on these 30
problems?", and is the one that k samples per problem shrink. `plan_samples` inverts the second;
`paired_difference` compares two checkpoints on the same problems.
"""

from __future__ import annotations

import math
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
    # a table this rule already processed keeps its labels (its Wilson rows are no longer 0-wide)
    rules = (
        summary["ci_rule"].astype(object).copy()
        if "ci_rule" in summary
        else pd.Series("bootstrap", index=out.index, dtype=object)
    )
    for i in out.index[edge]:
        ones = int(out.at[i, "avg"])
        lo, hi = wilson_interval(ones * int(n[i]), int(n[i]))
        out.at[i, "ci_lo"], out.at[i, "ci_hi"] = lo, hi
        rules[i] = f"Wilson (all {ones} over {int(n[i])} problems)"
    out["ci_rule"] = rules
    out.attrs = {**summary.attrs, "interval": INTERVAL_METHOD + BINOMIAL_NOTE}
    return out


SAMPLING_METHOD = (
    "95% interval with the problems held fixed (sampling noise only): normal approximation with "
    "each problem's binomial variance p(1-p)/(k-1); where that is not estimable (k = 1, or every "
    "problem at 0 or 1) a Wilson interval over all responses, an upper bound"
)
"""How `sampling_interval` is computed (stated beside every number that uses it)."""


def within_variance(n, c) -> np.ndarray:
    """Unbiased estimate of p_i(1-p_i) for each problem from c_i correct of n_i samples.

    c(n-c) / (n(n-1)): the plug-in p(1-p) underestimates by the factor (n-1)/n. NaN where n < 2.

    >>> within_variance([4, 1], [1, 1]).round(4).tolist()  # 1*3/(4*3); one sample: not estimable
    [0.25, nan]
    """
    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, c * (n - c) / (n * (n - 1)), np.nan)


def sampling_interval(n, c, z: float = Z95) -> tuple[float, float, str]:
    """(lo, hi, rule) of the mean accuracy over these problems, with the problems held fixed.

    The mean of N per-problem accuracies c_i/n_i has variance sum_i p_i(1-p_i)/n_i / N^2 when only
    the samples are random; each term is estimated without bias by c(n-c)/(n^2(n-1)). When that is
    not estimable (some n_i = 1) or is zero (every problem all-0 or all-1, where it would claim
    certainty), the interval is Wilson's over all N*k responses pooled: pooling treats every sample
    as a draw at the mean accuracy, whose variance a(1-a)/(Nk) bounds the fixed-problem variance
    from above (p(1-p) is concave), so the interval is conservative there.

    >>> [round(x, 4) for x in sampling_interval([4, 4], [2, 4])[:2]]  # var (1/3)/4/4 -> sd 0.1443
    [0.4671, 1.0]
    """
    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    if n.size == 0:
        return float("nan"), float("nan"), "none"
    avg = float(np.mean(c / n))
    v = within_variance(n, c)
    if np.isnan(v).any() or not (v > 0).any():
        lo, hi = wilson_interval(int(round(c.sum())), int(n.sum()), z)
        return lo, hi, "Wilson over all responses"
    half = z * float(np.sqrt(np.sum(v / n))) / n.size
    return max(0.0, avg - half), min(1.0, avg + half), "normal"


def sampling_half_width(n, c, z: float = Z95) -> float:
    """Half-width of `sampling_interval` before clipping to [0, 1] (what more samples shrink)."""
    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    v = within_variance(n, c)
    if n.size and not np.isnan(v).any() and (v > 0).any():
        return z * float(np.sqrt(np.sum(v / n))) / n.size
    lo, hi, _ = sampling_interval(n, c, z)
    return (hi - lo) / 2


# ----------------------------------------------------------------------------- paired comparisons
PAIRED_METHOD = (
    "paired per-problem difference (B - A) on the problems both evaluated: 95% percentile "
    "bootstrap over problems, a 95% interval with the problems held fixed, and a two-sided "
    "sign-flip permutation test (exact up to 16 differing problems) plus an exact sign test"
)
"""How `paired_difference` compares two checkpoints (stated beside every paired number)."""
_EXACT_FLIPS = 16
_MC_FLIPS = 20_000


def permutation_p(diffs: Sequence[float], seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of mean(diffs) = 0 (paired randomisation test).

    Under the null each problem's difference is as likely negative as positive. Exact over all
    2^m sign patterns of the m non-zero differences when m <= 16, else 20,000 random patterns
    with the (1 + hits) / (1 + draws) correction. 1.0 when every difference is 0.

    >>> permutation_p([1.0, 1.0, 1.0])  # 2 of 8 sign patterns reach |mean| 1
    0.25
    """
    d = np.asarray(diffs, dtype=float)
    d = d[~np.isnan(d) & (d != 0)]
    if d.size == 0:
        return 1.0
    obs = abs(d.sum()) - 1e-12 * d.size
    if d.size <= _EXACT_FLIPS:
        signs = 1 - 2 * ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1)
        return float(np.mean(np.abs(signs @ d) >= obs))
    rng = np.random.default_rng(seed)
    hits = sum(
        int((np.abs(rng.choice([-1.0, 1.0], size=(m, d.size)) @ d) >= obs).sum())
        for m in (_MC_FLIPS // 4,) * 4
    )
    return (1 + hits) / (1 + _MC_FLIPS)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | wins and losses equally likely).

    >>> round(sign_test_p(9, 1), 4)  # 2 * (1 + 10) / 2**10
    0.0215
    """
    m = wins + losses
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(wins, losses) + 1)) / 2**m
    return float(min(1.0, 2 * tail))


def paired_difference(
    a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 2000, seed: int = 0, z: float = Z95
) -> dict:
    """B minus A on the problems both evaluated (per_problem tables indexed by problem_id).

    Returns the mean difference, its 95% bootstrap interval over problems (generalisation), its
    95% interval with the problems held fixed (sampling noise of both sides, normal, each side's
    within-problem variance; NaN where not estimable), wins / losses / ties by problem (a problem
    B scores higher on is a win), the sign-flip permutation p-value and the sign-test p-value.
    """
    cols = ["n", "c", "accuracy"]
    both = a[cols].add_suffix("_a").join(b[cols].add_suffix("_b"), how="inner")
    both = both.dropna(subset=["accuracy_a", "accuracy_b"])
    if both.empty:
        raise ValueError("the two evaluations share no problem: nothing to pair")
    d = (both["accuracy_b"] - both["accuracy_a"]).to_numpy()
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    var = within_variance(both["n_a"], both["c_a"]) / both["n_a"].to_numpy(float)
    var = var + within_variance(both["n_b"], both["c_b"]) / both["n_b"].to_numpy(float)
    half = z * float(np.sqrt(np.sum(var))) / len(d) if not np.isnan(var).any() else float("nan")
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    return dict(
        problems=len(d),
        a=float(both["accuracy_a"].mean()),
        b=float(both["accuracy_b"].mean()),
        diff=float(d.mean()),
        diff_lo=lo,
        diff_hi=hi,
        diff_sampling_lo=float(d.mean()) - half,
        diff_sampling_hi=float(d.mean()) + half,
        wins=wins,
        losses=losses,
        ties=len(d) - wins - losses,
        p_value=permutation_p(d, seed=seed),
        sign_p=sign_test_p(wins, losses),
    )


def paired_table(
    responses: pd.DataFrame, reference: str | None = None, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Every checkpoint against a reference checkpoint (default: the first), per benchmark.

    One row per (benchmark, checkpoint != reference): `paired_difference(reference, checkpoint)`.
    """
    cks = list(dict.fromkeys(responses["checkpoint"]))
    ref = reference or (cks[0] if cks else None)
    rows = []
    for bench, g in responses.groupby("benchmark", sort=False):
        if ref not in set(g["checkpoint"]):
            continue
        base = per_problem(g[g["checkpoint"] == ref])
        for ck in cks:
            if ck == ref or ck not in set(g["checkpoint"]):
                continue
            other = per_problem(g[g["checkpoint"] == ck])
            r = paired_difference(base, other, n_boot=n_boot, seed=seed)
            rows.append(dict(benchmark=bench, a=ref, b=ck, **_rename_ab(r)))
    out = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    out.attrs["method"] = PAIRED_METHOD
    return out


PAIRED_COLUMNS = [
    "benchmark",
    "a",
    "b",
    "problems",
    "avg_a",
    "avg_b",
    "diff",
    "diff_lo",
    "diff_hi",
    "diff_sampling_lo",
    "diff_sampling_hi",
    "wins",
    "losses",
    "ties",
    "p_value",
    "sign_p",
]
"""Columns of `paired_table` (a, b: the two things compared; diff = avg_b - avg_a)."""


def _rename_ab(r: dict) -> dict:
    return {("avg_" + k if k in ("a", "b") else k): v for k, v in r.items()}


# ----------------------------------------------------------------------------- sample-size planner
def plan_samples(
    half_width: float,
    problems: int | None = None,
    *,
    pass_rates: pd.DataFrame | None = None,
    accuracy: float | None = None,
    z: float = Z95,
) -> dict:
    """Samples per problem k for a 95% half-width (problems held fixed), and what k cannot buy.

    With the problems fixed, the half-width at k samples each is z * sqrt(mean_i p_i(1-p_i) /
    (N k)), so k = ceil(z^2 * mean_i p_i(1-p_i) / (N h^2)). The mean of p_i(1-p_i) comes from a
    pilot (`pass_rates`: per-problem n and c, estimated without bias by `within_variance`), or
    from an assumed accuracy a as a(1-a): the largest value any set of problems with mean a can
    have, so that answer is an upper bound (it is exact when every problem sits at a).

    Also returned: `problems_floor`, the over-problems half-width that remains however many
    samples are drawn (z * between-problem sd / sqrt(N); from a pilot only: the spread of p_i,
    less the part sampling noise explains).
    """
    if not 0 < half_width < 1:
        raise ValueError(
            f"half_width is a fraction in (0, 1), e.g. 0.01 for ±1 point; got {half_width}"
        )
    floor = float("nan")
    if pass_rates is not None:
        pr = pass_rates.dropna(subset=["n", "c"])
        if pr.empty:
            raise ValueError("the pilot has no graded problem")
        if (pr["n"] < 2).any():
            raise ValueError("a pilot needs at least 2 samples per problem to estimate its spread")
        v = within_variance(pr["n"], pr["c"])
        mean_var, source = float(np.mean(v)), f"pilot: {len(pr)} problems x {int(pr['n'].max())}"
        if mean_var == 0:
            raise ValueError(
                "the pilot shows no spread within any problem (each solved by all or none of its "
                "samples), so it cannot say how many samples are needed: plan from an assumed "
                "accuracy instead, or draw a larger pilot"
            )
        problems = problems or len(pr)
        acc = pr["c"] / pr["n"]
        between = float(acc.var(ddof=1)) - float(np.mean(v / pr["n"])) if len(pr) > 1 else 0.0
        floor = z * np.sqrt(max(between, 0.0)) / np.sqrt(problems)
        accuracy_used = float(acc.mean())
    elif accuracy is not None:
        if not 0 <= accuracy <= 1:
            raise ValueError(f"accuracy is a fraction in [0, 1]; got {accuracy}")
        if not problems:
            raise ValueError("give the number of problems with an assumed accuracy")
        mean_var = accuracy * (1 - accuracy)
        source = f"assumed accuracy {accuracy:g} (every problem at it: an upper bound)"
        accuracy_used = accuracy
    else:
        raise ValueError("give a pilot's pass rates or an assumed accuracy")
    k = max(1, math.ceil(z * z * mean_var / (problems * half_width**2)))
    return dict(
        samples_per_problem=k,
        problems=int(problems),
        responses=int(k * problems),
        half_width=half_width,
        accuracy=accuracy_used,
        mean_p1p=mean_var,
        problems_floor=float(floor),
        source=source,
    )


# ----------------------------------------------------------------------------- protocol stamp
PROTOCOL_SETTINGS = [
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "yarn",
    "yarn_factor",
    "k",
    "grader",
]
"""The fields that define an evaluation protocol: two numbers share a mark only when all agree
(a protocol row also holds context_used and truncation_rate: what the run used, how often it cut)."""


def protocol_stamp(row) -> str:
    """One protocol row as text (the caption / table form)."""
    r = dict(row)
    yarn = f"YaRN ×{r['yarn_factor']:g}" if r.get("yarn") else "YaRN off"
    parts = [
        f"T {r['temperature']:g}",
        f"top-p {r['top_p']:g}",
        f"top-k {r['top_k'] or 'off'}",
        f"≤ {r['max_new_tokens']} new tokens",
        yarn,
        f"{r['k']} samples/problem",
        r["grader"],
    ]
    if "context_used" in r and not pd.isna(r.get("context_used")):
        parts.append(f"context used {int(r['context_used'])} tokens")
    if "truncation_rate" in r and not pd.isna(r.get("truncation_rate")):
        parts.append(f"truncated {100 * r['truncation_rate']:.1f}%")
    return " · ".join(parts)


def mark_protocols(table: pd.DataFrame) -> pd.DataFrame:
    """Add `protocol`: a letter per distinct PROTOCOL_SETTINGS combination (A, B, ... in order of first
    appearance); attrs['legend'] maps each letter to its settings as text."""
    if table.empty:
        return table.assign(protocol=pd.Series(dtype=object))
    keys = [tuple(_key(v) for v in row) for row in table[PROTOCOL_SETTINGS].itertuples(index=False)]
    letters: dict[tuple, str] = {}
    for k in keys:
        letters.setdefault(
            k, chr(ord("A") + len(letters)) if len(letters) < 26 else str(len(letters))
        )
    out = table.assign(protocol=[letters[k] for k in keys])
    first = {letters[k]: i for i, k in reversed(list(enumerate(keys)))}
    out.attrs["legend"] = {
        letter: protocol_stamp({c: table[c].iloc[i] for c in PROTOCOL_SETTINGS})
        for letter, i in first.items()
    }
    return out


def _key(v):
    return "nan" if isinstance(v, float) and np.isnan(v) else v


def protocol_legend(table: pd.DataFrame) -> str:
    """'A: T 1 · ... ; B: ...' for a marked table (one line per protocol)."""
    legend = table.attrs.get("legend", {})
    return "\n".join(f"protocol {k}: {v}" for k, v in sorted(legend.items()))


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
    """One row per (checkpoint, benchmark): avg@k, both intervals, pass@k, solve counts, lengths.

    ci_lo / ci_hi: over problems (`bootstrap_ci`, Wilson where degenerate); sampling_lo /
    sampling_hi: with the problems held fixed (`sampling_interval`), half_width its half-width.

    format_error_rate counts finished (untruncated) responses the grader rejected for format;
    truncated responses are counted by truncation_rate instead; ungraded = gold unparseable.
    """
    rows = []
    for (ck, b), g in responses.groupby(PAIR, sort=False):
        k = _samples_per_problem(g)
        pp = per_problem(g)
        lo, hi = bootstrap_ci(pp["accuracy"].to_numpy(), n_boot=n_boot, seed=seed)
        slo, shi, srule = sampling_interval(pp["n"], pp["c"])
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
                sampling_lo=slo,
                sampling_hi=shi,
                sampling_rule=srule,
                half_width=sampling_half_width(pp["n"], pp["c"]),
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
