"""Temperature probe: distinct-4, zones, the stage-1 choice, the re-probe match, override, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polaris_lib import metrics, probe
from polaris_lib.config.sections import ProbeConfig
from polaris_lib.grading.grader import GradeResult
from polaris_lib.policy.rollouts import grade_samples

# The paper's Qwen3-4B AIME24 curve on the qwen3-4b-paper grid (RECIPE §1). The blog gives 74.2 at
# 0.8 and the values from 1.45 up; 0.6-1.4 are "flat", filled here within half a point of the peak.
PAPER_GRID = [0.6, 0.8, 1.0, 1.2, 1.3, 1.4, 1.45, 1.5, 1.55, 1.6]
PAPER_ACC = [0.738, 0.742, 0.740, 0.736, 0.739, 0.737, 0.732, 0.702, 0.678, 0.500]


# ----------------------------------------------------------------------------- distinct-4
def test_distinct4_hand_computed():
    # 'a b c d e' -> abcd, bcde; 'a b c d x' -> abcd, bcdx: 4 grams, 3 unique.
    assert metrics.distinct_n(["a b c d e", "a b c d x"], 4) == pytest.approx(0.75)
    # Identical responses: 2 grams each, 2 unique of 6.
    assert metrics.distinct_n(["p q r s t"] * 3, 4) == pytest.approx(2 / 6)
    # Too short for any 4-gram: undefined, not 0 (skipped when averaging over problems).
    assert np.isnan(metrics.distinct_n(["a b c", "d"], 4))


def test_per_temperature_pools_per_problem_and_averages():
    rows = []
    for t, texts in [(0.5, ["a b c d e", "a b c d e"]), (1.0, ["a b c d e", "v w x y z"])]:
        for pid in ("p1", "p2"):
            for j, text in enumerate(texts):
                rows.append(
                    dict(
                        temperature=t,
                        problem_id=pid,
                        sample_idx=j,
                        text=text,
                        n_tokens=5,
                        finished=True,
                        truncated=j == 1 and t == 1.0,
                        correct=float(pid == "p1" or j == 0),
                    )
                )
    table = probe.per_temperature(pd.DataFrame(rows), n_boot=200)
    assert list(table.temperature) == [0.5, 1.0]
    assert table.distinct4.tolist() == pytest.approx([2 / 4, 4 / 4])
    assert table.accuracy.tolist() == pytest.approx([0.75, 0.75])  # p1 1.0, p2 0.5
    assert table.truncation_rate.tolist() == pytest.approx([0.0, 0.5])
    assert (table.acc_lo <= table.accuracy).all() and (table.accuracy <= table.acc_hi).all()


# ----------------------------------------------------------------------------- zones and choice
def _samples(temps, acc, n_problems=400, n_samples=16, seed=0):
    """Graded probe samples whose per-temperature accuracy follows `acc`: problem i solves a
    sample at T when u_ij < acc[T] + spread_i (spread: problems differ in difficulty)."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform(-0.2, 0.2, size=n_problems)
    rows = []
    for t, a in zip(temps, acc, strict=True):
        p = np.clip(a + spread - spread.mean(), 0, 1)
        hits = rng.uniform(size=(n_problems, n_samples)) < p[:, None]
        for i in range(n_problems):
            for j in range(n_samples):
                text = f"w{j} x{i} y z {t}"
                rows.append((t, f"p{i}", j, text, 5, True, False, float(hits[i, j])))
    return pd.DataFrame(rows, columns=probe.SAMPLE_COLUMNS)


def _choose(temps, acc, cfg=None, **kw):
    cfg = cfg or ProbeConfig(temperatures=list(temps), n_bootstrap=300, stability_resamples=20)
    samples = _samples(temps, acc, **kw)
    table = probe.per_temperature(samples, n_boot=100)
    m = probe.choose_temperature(table, cfg, samples=samples)
    return list(table.zone), m


def test_monotone_falling_curve():
    temps = [0.4, 0.6, 0.8, 1.0, 1.2, 1.4]
    zones, m = _choose(temps, [0.80, 0.80, 0.80, 0.78, 0.70, 0.50])
    assert zones == ["robust"] * 3 + ["exploration"] + ["collapse"] * 2
    assert m["probe/chosen_temperature"] == 0.8 and not m["probe/grid_exhausted"]
    # Falling from the first point on (no plateau): the bottom of the grid, flagged.
    zones, m = _choose(temps, [0.65, 0.53, 0.45, 0.41, 0.32, 0.25])
    assert zones == ["robust"] + ["collapse"] * 5
    assert m["probe/chosen_temperature"] == 0.4 and m["probe/grid_exhausted"]
    assert "downward" in m["probe/reason"]


def test_flat_curve_picks_grid_top_and_says_so():
    zones, m = _choose([0.6, 0.8, 1.0, 1.2], [0.50, 0.51, 0.50, 0.50])
    assert zones == ["robust"] * 4
    assert m["probe/chosen_temperature"] == 1.2 and m["probe/grid_exhausted"]
    assert "extend the grid upward" in m["probe/reason"]


def test_rising_then_falling_curve_marks_cold_zone():
    temps = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4]
    zones, m = _choose(temps, [0.30, 0.60, 0.70, 0.70, 0.70, 0.69, 0.50])
    assert zones == ["cold"] * 3 + ["robust"] * 2 + ["exploration", "collapse"]
    assert m["probe/chosen_temperature"] == 1.0


def test_a_sharp_knee_costs_one_grid_step():
    # s(T) pools T with its neighbours, so the last flat point (0.6) shares the 6-point drop at
    # 0.8 and a precise probe resolves it: the choice lands one grid step lower (0.4). The price
    # of the smoothing; on the paper's 0.05 grid near the knee that step is 0.05.
    zones, m = _choose([0.4, 0.6, 0.8, 1.0, 1.2, 1.4], [0.80, 0.80, 0.74, 0.70, 0.60, 0.40])
    assert m["probe/chosen_temperature"] == 0.4 and zones[1] == "exploration"


def test_a_resolved_three_point_dip_leaves_the_robust_zone():
    temps, acc = [0.6, 0.8, 1.0, 1.2, 1.4], [0.70, 0.70, 0.70, 0.67, 0.40]
    zones, m = _choose(temps, acc)
    assert m["probe/chosen_temperature"] == 1.0 and zones[3] == "exploration"


def test_decision_records_the_statistics_and_stability():
    temps = [0.6, 0.8, 1.0, 1.2, 1.4]
    zones, m = _choose(temps, [0.70, 0.70, 0.70, 0.60, 0.40])
    assert m["probe/method"] == "plateau_bootstrap" and m["probe/chosen_temperature"] == 0.8
    shares = m["probe/choice_stability"]
    assert list(shares) == ["0.6", "0.8", "1", "1.2", "1.4"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert m["probe/stability_of_choice"] == shares["0.8"] >= 0.9  # a clear-cut curve: stable
    assert m["probe/plateau_accuracy"] == pytest.approx(0.70, abs=0.02)
    assert m["probe/significance"] == 0.05 and m["probe/n_bootstrap"] == 300


def test_collapse_is_sticky_and_bad_input_is_rejected():
    zones = probe.classify_zones([1, 2, 3, 4], [0.8, 0.6, 0.75, 0.5], [1, 0, 1, 0], 0.1)
    assert zones == ["robust", "collapse", "collapse", "collapse"]
    with pytest.raises(ValueError, match="ascending"):
        probe.classify_zones([1.0, 0.5], [0.5, 0.5], [1, 1], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        probe.classify_zones([0.5, 1.0], [0.5, float("nan")], [1, 1], 0.1)
    # The bootstrap pairs temperatures by problem: a problem missing at one temperature is named.
    samples = _samples([0.5, 1.0], [0.5, 0.5], n_problems=3, n_samples=2)
    hole = (samples.problem_id == "p2") & (samples.temperature == 1.0)
    with pytest.raises(ValueError, match=r"p2 at T=1"):
        probe.accuracy_matrix(samples[~hole])


# ----------------------------------------------------------------------------- re-probe
def _table(temps, acc, d4):
    return pd.DataFrame({"temperature": temps, "accuracy": acc, "distinct4": d4})


def test_reprobe_matches_previous_diversity_never_below_previous_temperature():
    # After RL the curve shifted right: 0.63 is now reached at 1.45 (paper: 1.4 -> 1.45).
    t = [1.3, 1.4, 1.45, 1.5, 1.55, 1.6]
    d4 = [0.66, 0.55, 0.62, 0.70, 0.78, 0.85]  # 1.3's 0.66 is close too but below 1.4: not allowed
    zones = ["robust"] * 4 + ["exploration", "collapse"]
    c = probe.match_diversity(
        t, d4, zones, target=0.63, previous_temperature=1.4, match_tolerance=0.02
    )
    assert c.temperature == 1.45 and c.matched


def test_reprobe_ties_go_lower_and_collapse_is_excluded():
    t, zones = [1.0, 1.1, 1.2], ["robust", "robust", "collapse"]
    c = probe.match_diversity(
        t, [0.50, 0.70, 0.60], zones, target=0.60, previous_temperature=1.0, match_tolerance=0.02
    )
    assert c.temperature == 1.0 and not c.matched  # 1.2 matches exactly but collapsed; tie -> 1.0


def test_reprobe_grid_too_low_takes_top_and_flags_it():
    c = probe.match_diversity(
        [1.0, 1.2],
        [0.3, 0.4],
        ["robust"] * 2,
        target=0.6,
        previous_temperature=1.0,
        match_tolerance=0.02,
    )
    assert c.temperature == 1.2 and c.grid_exhausted and not c.matched
    none = probe.match_diversity(
        [0.5, 0.8],
        [0.3, 0.4],
        ["robust"] * 2,
        target=0.6,
        previous_temperature=1.0,
        match_tolerance=0.02,
    )
    assert none.temperature == 1.0 and "kept the previous" in none.reason


def test_decide_stage2_and_override_are_recorded():
    cfg = ProbeConfig(
        temperatures=[1.0, 1.1, 1.2, 1.3],
        match_tolerance=0.02,
        n_bootstrap=200,
        stability_resamples=10,
    )
    samples = _samples(cfg.temperatures, [0.70, 0.70, 0.69, 0.50], n_problems=100)
    table = probe.per_temperature(samples, n_boot=100)
    table["distinct4"] = [0.40, 0.45, 0.52, 0.70]
    prev = {"probe/chosen_temperature": 1.1, "probe/distinct4_at_chosen": 0.51}
    m = probe.choose_temperature(table, cfg, samples=samples, stage=2, previous=prev)
    assert m["probe/chosen_temperature"] == 1.2 and m["probe/method"] == "match_diversity"
    assert m["probe/distinct4_at_chosen"] == pytest.approx(0.52) and m["probe/matched"]
    assert not m["probe/overridden"] and m["probe/rule"] == probe.RULE
    cfg.override_temperature = 1.15
    m = probe.choose_temperature(table, cfg, samples=samples, stage=1)
    assert m["probe/overridden"] and m["probe/chosen_temperature"] == 1.15
    assert m["probe/automatic_temperature"] == 1.1  # what the rule would have chosen
    assert m["probe/distinct4_at_chosen"] == pytest.approx(0.485)  # interpolated off-grid
    with pytest.raises(ValueError, match="previous probe"):
        probe.choose_temperature(table, cfg, samples=samples, stage=2)


# ----------------------------------------------------------------------------- resume
class _Grader:
    """Exact match of the whole text against the first gold form (a stand-in for math-verify)."""

    def grade_batch_results(self, texts, golds):
        return [
            GradeResult(int(t == f"\\boxed{{{g[0]}}}"), "fake")
            for t, g in zip(texts, golds, strict=True)
        ]


def _problems():
    return pd.DataFrame(
        {
            "problem_id": ["a", "b"],
            "problem": ["1+1", "2+2"],
            "answer": ["2", "4"],
            "answers": [["2"], ["4"]],
        }
    )


def _fake_sampler(calls, fail_at=None):
    """score_fn for run_grid: fake samples graded by the kit's grading step (with _Grader)."""

    def fn(t):
        if t == fail_at:
            raise RuntimeError("simulated crash")
        calls.append(t)
        rows = [
            dict(
                problem_id=p,
                sample_idx=j,
                text=f"\\boxed{{{2 if j else 3}}}",
                n_tokens=3,
                finished=True,
                truncated=False,
            )
            for p in ("a", "b")
            for j in range(2)
        ]
        return grade_samples(pd.DataFrame(rows), _problems(), _Grader())

    return fn


def test_partial_grid_resumes_without_redoing_done_temperatures(tmp_path):
    cfg = ProbeConfig(temperatures=[0.5, 1.0, 1.5], n_samples=2)
    calls = []
    with pytest.raises(RuntimeError, match="simulated"):
        probe.run_grid(_fake_sampler(calls, fail_at=1.5), _problems(), cfg, tmp_path, key={"m": 1})
    assert calls == [0.5, 1.0]
    samples = probe.run_grid(_fake_sampler(calls), _problems(), cfg, tmp_path, key={"m": 1})
    assert calls == [0.5, 1.0, 1.5]  # only the missing temperature was sampled
    assert len(samples) == 12 and list(samples.columns) == probe.SAMPLE_COLUMNS
    assert samples.correct.tolist() == [0.0, 1.0, 0.0, 0.0] * 3  # "a"'s gold is 2, "b"'s is 4
    # A finished grid is read back whole: no sampling at all (1.0 and 1.5 share no file).
    again = probe.run_grid(_fake_sampler(calls), _problems(), cfg, tmp_path, key={"m": 1})
    assert calls == [0.5, 1.0, 1.5] and again.equals(samples)
    # A different model (fingerprint) redoes everything instead of reusing stale samples.
    probe.run_grid(_fake_sampler(calls), _problems(), cfg, tmp_path, key={"m": 2})
    assert calls == [0.5, 1.0, 1.5, 0.5, 1.0, 1.5]


def test_paper_reference_only_for_qwen3_4b():
    assert probe.paper_reference("Qwen/Qwen3-4B") is not None
    assert probe.paper_reference("toy") is None


def test_probe_figures_render(tmp_path):
    from polaris_lib import artifacts
    from polaris_lib.probe import figures as probe_plots

    cfg = ProbeConfig(n_bootstrap=200, stability_resamples=20)
    samples = _samples(PAPER_GRID, PAPER_ACC, n_problems=60)
    table = probe.per_temperature(samples, n_boot=100)
    table["distinct4"] = np.linspace(0.4, 0.85, 10)
    m = probe.choose_temperature(table, cfg, samples=samples)
    assert set(table.zone) == {"robust", "exploration", "collapse"}
    assert table.chosen_share.sum() == pytest.approx(1.0)
    fig = probe_plots.probe_curve(
        table,
        m["probe/chosen_temperature"],
        caption_text="test",
        reference=probe.paper_reference("Qwen/Qwen3-4B"),
    )
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert "paper Qwen3-4B AIME24 accuracy" in labels and "performance collapse" in labels
    # The stability panel: one bar per grid temperature, heights = the shares.
    share_ax = fig.axes[1]
    assert [b.get_height() for b in share_ax.patches] == pytest.approx(list(table.chosen_share))
    assert artifacts.save_figure(fig, tmp_path / "p.png").stat().st_size > 10_000
    fig = probe_plots.truncation_curve(table, caption_text="test")
    assert artifacts.save_figure(fig, tmp_path / "t.png").stat().st_size > 5_000
