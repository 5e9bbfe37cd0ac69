"""Tests for polaris_lib/metrics.py: hand-computed cases and a bootstrap coverage check."""

from __future__ import annotations

import itertools
import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from polaris_lib.metrics import (
    PAIRED_COLUMNS,
    binomial_rule,
    bootstrap_ci,
    distinct_n,
    paired_difference,
    paired_table,
    pass_at_k,
    per_problem,
    permutation_p,
    plan_samples,
    sampling_half_width,
    sampling_interval,
    sign_test_p,
    summarize,
    truncation_rate,
    wilson_interval,
)


@pytest.mark.parametrize("n, c, k", [(4, 1, 2), (8, 3, 4), (16, 0, 1), (16, 16, 8), (10, 2, 9)])
def test_pass_at_k_matches_binomial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_equals_enumeration_over_subsets():
    """pass@k is the chance a random k-subset of the n samples holds a correct one."""
    samples = [1, 0, 0, 1, 0]
    subsets = list(combinations(samples, 3))
    assert pass_at_k(5, 2, 3) == pytest.approx(np.mean([any(s) for s in subsets]))


def test_pass_at_k_stable_for_large_n():
    # C(1024, 512) overflows floats; the product form stays exact enough.
    assert 0.0 < pass_at_k(1024, 1, 512) == pytest.approx(0.5)
    assert pass_at_k(1024, 0, 512) == 0.0
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)


def test_distinct_4_hand_computed():
    texts = ["a b c d e", "a b c d e"]  # 2 + 2 four-grams, 2 unique
    assert distinct_n(texts, 4) == pytest.approx(0.5)
    assert distinct_n(["a b c d e f"], 4) == pytest.approx(1.0)
    assert math.isnan(distinct_n(["too short"], 4))


def test_rates():
    assert truncation_rate([True, False]) == 0.5


def test_bootstrap_coverage_on_synthetic_case():
    """A 95% CI over problems covers the true mean in roughly 95% of repeated experiments."""
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0, 1, size=2000)  # a large population of per-problem accuracies
    truth = true_p.mean()
    hits = 0
    trials = 200
    for t in range(trials):
        sample = rng.choice(true_p, size=60)
        lo, hi = bootstrap_ci(sample, n_boot=400, seed=t)
        hits += lo <= truth <= hi
    assert 0.88 <= hits / trials <= 0.99
    assert bootstrap_ci([0.5, 0.5], seed=0) == (0.5, 0.5)


def test_per_problem_ignores_ungraded_samples():
    df = pd.DataFrame(
        {
            "problem_id": ["p1"] * 4 + ["p2"] * 4 + ["p3"] * 4,
            "sample_idx": list(range(4)) * 3,
            "correct": [1, 0, 0, 0] + [1, 1, 1, 1] + [0, 0, 0, None],
        }
    )
    pp = per_problem(df)
    assert pp.loc["p3", "n"] == 3  # the ungraded sample is not counted
    assert pp["accuracy"].tolist() == pytest.approx([0.25, 1.0, 0.0])
    assert pp["c"].tolist() == [1, 4, 0]
    with pytest.raises(KeyError, match="correct"):
        per_problem(df.drop(columns="correct"))


def test_wilson_interval_by_hand():
    """Issue 16 item 10: all-0 / all-1 sets get a binomial interval, not [0, 0] or [1, 1].

    By hand, z = 1.959964, z^2 = 3.841459: 0 of 30 -> [0, z^2 / (30 + z^2)] = [0, 0.113513];
    30 of 30 -> [30 / 33.841459, 1] = [0.886487, 1]; 5 of 10 -> centre 0.5, half-width
    z * sqrt(0.025 + z^2 / 400) / (1 + z^2 / 10) = 0.263407 -> [0.236593, 0.763407].
    """
    assert wilson_interval(0, 30) == pytest.approx((0.0, 0.113513), abs=1e-6)
    assert wilson_interval(30, 30) == pytest.approx((0.886487, 1.0), abs=1e-6)
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_all_zero_set_gets_a_wilson_interval_in_the_summary():
    rows = [
        dict(
            checkpoint="c",
            benchmark=b,
            problem_id=f"{b}{p}",
            sample_idx=0,
            text="x",
            n_tokens=5,
            truncated=False,
            correct=ok(p),
            reason="ok",
        )
        for b, ok in (("zero", lambda p: False), ("one", lambda p: True), ("mix", lambda p: p % 2))
        for p in range(30)
    ]
    s = summarize(pd.DataFrame(rows), n_boot=200).set_index("benchmark")
    assert (s.at["zero", "ci_lo"], s.at["zero", "ci_hi"]) == pytest.approx(
        (0.0, 0.113513), abs=1e-6
    )
    assert s.at["one", "ci_lo"] == pytest.approx(0.886487, abs=1e-6) and s.at[
        "one", "ci_hi"
    ] == pytest.approx(1)
    assert s.at["zero", "ci_rule"] == "Wilson (all 0 over 30 problems)"
    assert s.at["mix", "ci_rule"] == "bootstrap" and 0 < s.at["mix", "ci_lo"] < 0.5
    assert "Wilson" in s.attrs["interval"]
    # a stored table of an older run (degenerate bootstrap interval) is fixed the same way
    old = pd.DataFrame([dict(avg=0.0, ci_lo=0.0, ci_hi=0.0, problems=30)])
    assert binomial_rule(old)["ci_hi"].iloc[0] == pytest.approx(0.113513, abs=1e-6)


# ----------------------------------------------------------------------------- issue 15
def _table(rows: dict[str, list[int]], checkpoint: str = "base") -> pd.DataFrame:
    """A hand-made correctness table: problem -> its samples' verdicts."""
    return pd.DataFrame(
        [
            dict(checkpoint=checkpoint, benchmark="b", problem_id=p, sample_idx=i, correct=v)
            for p, vs in rows.items()
            for i, v in enumerate(vs)
        ]
    )


HAND = {"p1": [1, 1, 1, 0], "p2": [1, 0, 0, 0], "p3": [0, 0, 0, 0]}


def test_sampling_interval_hand_computed():
    """Problems fixed: var = sum_i c(n-c)/(n^2(n-1)) / N^2 = (1/16 + 1/16 + 0) / 9."""
    pp = per_problem(_table(HAND))
    lo, hi, rule = sampling_interval(pp["n"], pp["c"])
    half = 1.959963984540054 * math.sqrt(0.125) / 3
    assert rule == "normal"
    assert (lo, hi) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    assert sampling_half_width(pp["n"], pp["c"]) == pytest.approx(half)
    # Degenerate: every problem all-0 -> Wilson over all 12 responses, never [0, 0].
    lo, hi, rule = sampling_interval([4, 4, 4], [0, 0, 0])
    assert (lo, hi) == pytest.approx(wilson_interval(0, 12)) and "Wilson" in rule
    # One sample per problem: not estimable, the same conservative pooled interval.
    assert sampling_interval([1, 1], [1, 0])[2].startswith("Wilson")


def test_over_problems_interval_matches_the_exact_bootstrap():
    """The three per-problem means {0.75, 0.25, 0}: all 27 resamples enumerated by hand."""
    means = sorted(np.mean(c) for c in itertools.product([0.75, 0.25, 0.0], repeat=3))
    weights = np.full(27, 1 / 27)
    cdf = np.cumsum(weights)
    exact = (means[int(np.searchsorted(cdf, 0.025))], means[int(np.searchsorted(cdf, 0.975))])
    lo, hi = bootstrap_ci([0.75, 0.25, 0.0], n_boot=20000, seed=1)
    assert (lo, hi) == pytest.approx(exact, abs=1e-9)
    s = summarize(_table(HAND).assign(n_tokens=1, truncated=False, reason="correct"))
    assert s.loc[0, "ci_lo"] == pytest.approx(bootstrap_ci([0.75, 0.25, 0.0], 2000)[0])
    assert s.loc[0, "sampling_lo"] < s.loc[0, "avg"] < s.loc[0, "sampling_hi"]
    # sampling noise only is narrower here than resampling these very different problems
    assert s.loc[0, "sampling_hi"] - s.loc[0, "sampling_lo"] < s.loc[0, "ci_hi"] - s.loc[0, "ci_lo"]


def test_sampling_interval_covers_the_fixed_problems_mean():
    """30 fixed problems, k = 8: the interval covers the true mean of these problems ~95%."""
    rng = np.random.default_rng(3)
    p = rng.beta(2, 1, size=30)
    hits = 0
    for _ in range(1000):
        c = rng.binomial(8, p)
        lo, hi, _ = sampling_interval(np.full(30, 8), c)
        hits += lo <= p.mean() <= hi
    assert 0.92 <= hits / 1000 <= 0.98


def test_paired_difference_hand_computed():
    a = per_problem(_table({"p1": [1, 1, 0, 0], "p2": [0, 0, 0, 0], "p3": [1, 1, 1, 1]}))
    b = per_problem(_table({"p1": [1, 1, 1, 1], "p2": [1, 0, 0, 0], "p3": [1, 1, 1, 1]}))
    r = paired_difference(a, b, n_boot=2000)
    assert r["diff"] == pytest.approx(0.25) and (r["wins"], r["losses"], r["ties"]) == (2, 0, 1)
    # sign flips of the non-zero differences (0.5, 0.25): sums ±0.75, ±0.25 -> 2 of 4 as extreme
    assert r["p_value"] == pytest.approx(0.5) and r["sign_p"] == pytest.approx(0.5)
    half = 1.959963984540054 * math.sqrt(1 / 12 + 1 / 16) / 3  # p1 of A, p2 of B
    assert (r["diff_sampling_lo"], r["diff_sampling_hi"]) == pytest.approx(
        (0.25 - half, 0.25 + half)
    )
    assert r["diff_lo"] == pytest.approx(bootstrap_ci([0.5, 0.25, 0.0], 2000)[0])
    with pytest.raises(ValueError, match="share no problem"):
        paired_difference(a, per_problem(_table({"q": [1, 0]})))


def test_paired_tests_exact_and_sampled():
    assert permutation_p([0.0, 0.0]) == 1.0
    assert permutation_p([1.0, -1.0]) == 1.0
    # 10 of 10 problems better: exact 2 / 2^10 for both tests
    assert permutation_p([0.5] * 10) == pytest.approx(2 / 1024)
    assert sign_test_p(10, 0) == pytest.approx(2 / 1024)
    # 24 differences: Monte Carlo with the +1 correction, close to the exact 2 / 2^24
    assert permutation_p([0.25] * 24) == pytest.approx(1 / 20001)
    rng = np.random.default_rng(0)
    null = [permutation_p(rng.choice([-1, 1], 12) * rng.uniform(0.1, 1, 12)) for _ in range(200)]
    assert 0.02 <= np.mean(np.array(null) < 0.05) <= 0.10  # a valid test: ~5% false alarms


def test_paired_table_stage_vs_base():
    t = pd.concat(
        [
            _table({"p1": [0, 0], "p2": [0, 1]}, "base"),
            _table({"p1": [1, 1], "p2": [1, 1]}, "final"),
        ]
    )
    out = paired_table(t)
    assert list(out.columns) == PAIRED_COLUMNS
    assert out.loc[0, ["a", "b"]].tolist() == ["base", "final"]
    assert out.loc[0, "diff"] == pytest.approx(0.75) and out.loc[0, "wins"] == 2


def _simulated_half_width(p: np.ndarray, k: int, rng, reps: int = 20000) -> float:
    """95% half-width of the mean of k-sample accuracies of fixed problems, by simulation."""
    avg = rng.binomial(k, np.broadcast_to(p, (reps, p.size))).mean(axis=1) / k
    return float(np.quantile(np.abs(avg - p.mean()), 0.95))


@pytest.mark.parametrize("target", [0.02, 0.01])
def test_planner_matches_simulation_within_10_percent(target):
    """From a pilot's pass rates: the planned k reaches the target half-width in simulation."""
    rng = np.random.default_rng(7)
    p = rng.beta(3, 1, size=30)  # 30 problems around 75%, spread like a real benchmark
    pilot = pd.DataFrame({"n": 64, "c": rng.binomial(64, p)})
    plan = plan_samples(target, pass_rates=pilot)
    k = plan["samples_per_problem"]
    achieved = _simulated_half_width(p, k, rng)
    # the k the simulation says is needed: half-width scales as 1/sqrt(k)
    assert abs(k * (achieved / target) ** 2 / k - 1) < 0.10
    assert plan["problems_floor"] > target  # resampling problems: more samples cannot remove it


def test_planner_from_an_assumed_accuracy():
    """All problems at 80%: k = ceil(1.96^2 * 0.16 / (30 * 0.01^2)) = 205, exact in simulation."""
    plan = plan_samples(0.01, 30, accuracy=0.8)
    assert plan["samples_per_problem"] == 205 and plan["responses"] == 205 * 30
    achieved = _simulated_half_width(np.full(30, 0.8), 205, np.random.default_rng(0))
    assert achieved == pytest.approx(0.01, rel=0.10)
    with pytest.raises(ValueError, match="fraction"):
        plan_samples(1.0, 30, accuracy=0.5)
    with pytest.raises(ValueError, match="pilot's pass rates or an assumed accuracy"):
        plan_samples(0.01, 30)
    with pytest.raises(ValueError, match="no spread within any problem"):
        plan_samples(0.01, pass_rates=pd.DataFrame({"n": [4, 4], "c": [0, 4]}))
    with pytest.raises(ValueError, match="at least 2 samples"):
        plan_samples(0.01, pass_rates=pd.DataFrame({"n": [1], "c": [1]}))


def test_binomial_rule_twice_keeps_the_wilson_label():
    """The report re-applies the rule to a stored summary: a Wilson row stays labelled Wilson."""
    s = pd.DataFrame(dict(avg=[0.0, 0.5], ci_lo=[0.0, 0.3], ci_hi=[0.0, 0.7], problems=[10, 10]))
    once = binomial_rule(s)
    twice = binomial_rule(once)
    assert twice["ci_rule"].tolist() == once["ci_rule"].tolist()
    assert twice.loc[0, "ci_rule"].startswith("Wilson") and twice.loc[1, "ci_rule"] == "bootstrap"
