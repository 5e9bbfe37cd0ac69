"""Tests for polaris_lib/metrics.py: hand-computed cases and a bootstrap coverage check."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from polaris_lib.metrics import (
    binomial_rule,
    bootstrap_ci,
    distinct_n,
    pass_at_k,
    per_problem,
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
