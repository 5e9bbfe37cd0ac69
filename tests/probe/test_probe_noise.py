"""Issue 14 item 4: the stage-1 probe rule survives sampling noise on the paper's own curve.

The paper's Qwen3-4B AIME24 curve (RECIPE §1; 0.6-1.4 "flat", filled within half a point of the
74.2 peak) is simulated at the paper preset's probe size (30 problems x 16 samples) with
per-problem heterogeneity: problem i's accuracy at T is sigmoid(theta_i + delta_T), theta_i ~
N(0, 2^2) (at T = 1.0 about a quarter of the problems score 16/16), delta_T solved so that the
mean over problems follows the curve. Each replicate draws new problems and new samples.
"""

from __future__ import annotations

import numpy as np

from polaris_lib import probe
from polaris_lib.config.presets import get_preset

PAPER_GRID = [0.6, 0.8, 1.0, 1.2, 1.3, 1.4, 1.45, 1.5, 1.55, 1.6]
PAPER_ACC = np.array([0.738, 0.742, 0.740, 0.736, 0.739, 0.737, 0.732, 0.702, 0.678, 0.500])
SIGMA = 2.0  # per-problem spread of difficulty on the logit scale
REPLICATES = 400


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _offsets(curve, sigma, n_quad=100_000):
    """delta_T with mean_i sigmoid(theta_i + delta_T) = curve[T] (bisection, monotone in delta)."""
    theta = np.random.default_rng(123).normal(size=n_quad) * sigma
    lo, hi = np.full(len(curve), -20.0), np.full(len(curve), 20.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        above = _sigmoid(theta[:, None] + mid).mean(0) > curve
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return (lo + hi) / 2


def _simulate(n_problems, n_samples, replicates, seed=0):
    """Per-problem accuracies, replicates x problems x temperatures."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(replicates, n_problems, 1)) * SIGMA
    p = _sigmoid(theta + _offsets(PAPER_ACC, SIGMA))
    return rng.binomial(n_samples, p) / n_samples


def _fixed_band_choice(acc, tolerance):
    """The kit's former rule: highest temperature of the contiguous run within `tolerance` of the
    single best grid point (kept here only to show what the statistics fix)."""
    peak = int(np.argmax(acc))
    hi = peak
    while hi + 1 < len(acc) and acc[hi + 1] >= acc[peak] - tolerance - 1e-12:
        hi += 1
    return PAPER_GRID[hi]


def _chosen(per_problem, cfg):
    weights = probe.bootstrap_weights(per_problem.shape[1], cfg.n_bootstrap, seed=0)
    robust = probe.plateau_test(
        per_problem,
        weights,
        robust_tolerance=cfg.robust_tolerance,
        significance=cfg.significance,
    )["robust"]
    out = []
    for x, r in zip(per_problem, robust, strict=True):
        zones = probe.classify_zones(PAPER_GRID, x.mean(0), r, cfg.collapse_drop)
        out.append(probe.choose_initial(PAPER_GRID, zones).temperature)
    return np.array(out)


def test_statistical_rule_picks_1_4_on_the_noisy_paper_curve():
    cfg = get_preset("qwen3-4b-paper").probe
    assert cfg.temperatures == PAPER_GRID and (cfg.n_problems, cfg.n_samples) == (30, 16)
    sims = _simulate(cfg.n_problems, cfg.n_samples, REPLICATES)
    chosen = _chosen(sims, cfg)
    near = np.abs(chosen - probe.PAPER_QWEN3_4B_CHOICE) <= 0.05 + 1e-9
    assert near.mean() >= 0.80, {t: float((chosen == t).mean()) for t in PAPER_GRID}
    # The fixed 0.8-point band around the single best point (the former paper preset) lands on
    # 1.4 +- 0.05 in a fraction of the probes: the best point's noise sets the band.
    old = np.array([_fixed_band_choice(x.mean(0), 0.008) for x in sims])
    assert (np.abs(old - 1.4) <= 0.05 + 1e-9).mean() < 0.35
    assert (old <= 1.0).mean() > 0.35
    # Why: two equally good temperatures (0.6 and 1.0, both "flat") differ by ~2 points (sd).
    sd = (sims[:, :, 0].mean(1) - sims[:, :, 2].mean(1)).std()
    assert 0.015 < sd < 0.03


def test_with_many_problems_the_rule_converges_to_the_papers_choice():
    # 3,000 problems: sampling noise is small, the rule reads the curve itself; the 1-point dip
    # at 1.45 is resolved as a drop, as the paper judged it (RECIPE §1).
    cfg = get_preset("qwen3-4b-paper").probe
    sims = _simulate(3000, 16, 1, seed=1)
    assert _chosen(sims, cfg).tolist() == [1.4]


def test_choice_stability_is_reported_and_sums_to_one():
    cfg = get_preset("qwen3-4b-paper").probe
    per_problem = _simulate(30, 16, 1, seed=2)[0]
    shares = probe.choice_stability(per_problem, PAPER_GRID, cfg, seed=0)
    assert shares.shape == (10,) and abs(shares.sum() - 1) < 1e-9
    assert shares[PAPER_GRID.index(1.6)] == 0  # collapse is never chosen
    # Most resamples choose near 1.4 on a curve like the paper's.
    near = [i for i, t in enumerate(PAPER_GRID) if abs(t - 1.4) <= 0.05 + 1e-9]
    assert shares[near].sum() >= 0.5
