"""Temperature probe (RECIPE.md §1): zones of the accuracy/diversity curve and the choice of T.

Sampling and grading the grid, resuming it and tabulating it live in polaris_lib.probe.run.

The rule (also written into metrics.json as "probe/rule"):

Stage 1 — the plateau, by statistics. The paper's rule is "the highest temperature whose accuracy
has not yet left the robust zone" (Qwen3-4B: 1.4), the zone where accuracy is flat at its best.
With 30 problems x 16 samples the accuracy difference between two equally good temperatures
moves by about 2 points from sampling alone, twice the paper's whole dip at 1.45, so a fixed band
around the single best point mostly measures noise (the best point is the maximum of noisy values
and overstates the plateau): on the paper's own curve a 0.8-point band lands within 0.05 of 1.4
in under 35% of simulated probes (tests/probe/test_probe_noise.py). The kit therefore decides with a paired per-problem bootstrap
(every temperature is sampled on the same problems, so problem difficulty cancels in differences):
- smoothed accuracy s(T): each problem's accuracy averaged over T and its grid neighbours (one on
  each side; accuracy is smooth in T and one point's n samples are too few on their own);
- plateau level: the per-problem mean of s over every temperature whose s is not significantly
  below the best s (first pass), i.e. the pooled level of the flat part, not its noisiest point;
- robust: s(T) is not significantly below the plateau level minus robust_tolerance — the
  one-sided (1 - significance) bootstrap upper bound of s(T) - plateau is >= -robust_tolerance
  (the same problem resample for every temperature, n_bootstrap resamples);
- collapse: from the first temperature above the raw peak whose accuracy (avg@n) is below the
  best avg@n minus collapse_drop, on (sticky);
- chosen: the highest robust temperature below the collapse zone, i.e. the start of controlled
  exploration. Zones: cold below the lowest robust temperature, robust from there to the chosen
  one (a lone insignificant dip inside counts as plateau), exploration between the chosen one and
  collapse. "probe/grid_exhausted" is set when the choice is the grid's top (flat up to the top:
  extend the grid upward) or its bottom (falling from the start: no plateau on this grid).
Stability: the whole rule is rerun on stability_resamples resamples of the problems;
"probe/choice_stability" is the share of resamples choosing each temperature (the per_temperature
table's chosen_share column; bars under the probe figure).

Stage k > 1 — re-probe. RL lowers diversity, so the probe of stage k-1's checkpoint picks the
temperature whose distinct-4 is closest to the previous probe's distinct-4 at its chosen
temperature (the target), among grid temperatures >= the previous temperature and outside the
collapse zone; ties go to the lower temperature. "probe/matched" says whether the distance is
within match_tolerance. If no grid temperature qualifies, the previous temperature is kept.

distinct-4 (RECIPE §1): a problem's n responses pooled, whitespace-split, unique 4-grams / all
4-grams (metrics.distinct_n), averaged over problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import artifacts
from polaris_lib.config.sections import ProbeConfig

ZONES = ("cold", "robust", "exploration", "collapse")
RULE = (
    "stage 1: paired per-problem bootstrap (every temperature sampled on the same problems); "
    "s(T) = each problem's accuracy averaged over T and its grid neighbours; plateau level = the "
    "pooled s of the temperatures not significantly below the best s; robust = s(T) not "
    "significantly below the plateau level minus robust_tolerance (one-sided, level "
    "significance); collapse = from the first temperature above the peak with avg@n < best - "
    "collapse_drop; chosen = highest robust temperature below collapse (start of controlled "
    "exploration; flagged grid_exhausted when it is the top or the bottom of the grid); "
    "choice_stability = share of problem resamples choosing each temperature. stage k>1: grid "
    "temperature >= the previous one, outside collapse, whose distinct-4 is closest to the "
    "previous probe's distinct-4 at its chosen temperature (ties: lower)."
)


def rule_for(stage: int) -> str:
    """The rule of one stage in one line, for a notebook's log (RULE has both, ~800 characters)."""
    if stage <= 1:
        return (
            "stage 1 rule: the highest temperature whose accuracy is not significantly below the "
            "plateau (paired bootstrap), i.e. the start of controlled exploration (probe.RULE)"
        )
    return (
        f"stage {stage} rule: the temperature >= the previous stage's, outside collapse, whose "
        "distinct-4 is closest to the previous stage's (full rule: probe.RULE)"
    )


# The paper's Qwen3-4B AIME24 probe (RECIPE.md §1; accuracy and distinct-4 as fractions).
PAPER_QWEN3_4B = pd.DataFrame(
    {
        "temperature": [0.8, 1.45, 1.5, 1.55, 1.6],
        "accuracy": [0.742, 0.732, 0.702, 0.678, 0.500],
    }
)
PAPER_QWEN3_4B_DISTINCT4 = pd.DataFrame(
    {"temperature": [0.6, 1.0, 1.4, 1.6], "distinct4": [0.42, 0.47, 0.63, 0.84]}
)
PAPER_QWEN3_4B_CHOICE = 1.4


@dataclass(frozen=True)
class Choice:
    """A chosen temperature and why."""

    temperature: float
    reason: str
    grid_exhausted: bool = False
    matched: bool | None = None


# ----------------------------------------------------------------------------- the rule
def accuracy_matrix(samples: pd.DataFrame) -> tuple[list[float], list[str], np.ndarray]:
    """Each problem's accuracy at each temperature: (temperatures, problem ids, problems x temps).

    The bootstrap pairs temperatures by problem, so every temperature must cover the same
    problems; ungraded samples (NaN) are ignored, a problem with none graded at some temperature
    is an error naming it.
    """
    need = {"temperature", "problem_id", "correct"}
    if missing := need - set(samples.columns):
        raise ValueError(f"probe samples lack columns {sorted(missing)}")
    correct = pd.to_numeric(samples["correct"], errors="coerce")
    table = correct.groupby([samples.problem_id, samples.temperature]).mean().unstack("temperature")
    if table.empty:
        raise ValueError("probe samples are empty: nothing to choose a temperature from")
    if table.isna().any().any():
        holes = table.isna().stack()
        pairs = [f"{pid} at T={t:g}" for (pid, t), hole in holes.items() if hole][:5]
        raise ValueError(
            "the stage-1 rule compares temperatures on the same problems, but some problem has no "
            f"graded sample at some temperature: {', '.join(pairs)}"
        )
    return [float(t) for t in table.columns], [str(i) for i in table.index], table.to_numpy(float)


def bootstrap_weights(n_problems: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Multinomial resample counts of the problems, n_bootstrap x n_problems (one per resample)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_problems, np.full(n_problems, 1 / n_problems), size=n_bootstrap)


def smooth(per_problem: np.ndarray) -> np.ndarray:
    """Each problem's accuracy averaged over each temperature and its grid neighbours (..., n, T)."""
    x = np.asarray(per_problem, float)
    n_t = x.shape[-1]
    return np.stack([x[..., max(0, k - 1) : k + 2].mean(-1) for k in range(n_t)], axis=-1)


def plateau_test(
    per_problem: np.ndarray, weights: np.ndarray, *, robust_tolerance: float, significance: float
) -> dict[str, np.ndarray]:
    """The statistical part of the stage-1 rule on (..., problems, temperatures) accuracies.

    Returns, per temperature (leading dimensions kept): "smoothed" s(T), "upper" the one-sided
    upper bound of s(T) - plateau level, "robust" (upper >= -robust_tolerance); and "plateau" the
    plateau level. `weights`: bootstrap_weights (the same resamples for every temperature).
    """
    s = smooth(per_problem)
    n = s.shape[-2]
    observed = s.mean(-2)  # (..., T)
    boot = np.einsum("bn,...nt->...bt", weights, s) / n  # (..., B, T)
    q, edge = 1.0 - significance, -robust_tolerance - 1e-12  # 1e-12: exactly on the edge is in
    best = np.take_along_axis(boot, observed.argmax(-1)[..., None, None], -1)
    first = np.quantile(boot - best, q, axis=-2) >= edge  # not significantly below the best
    pool = first / first.sum(-1, keepdims=True)  # the best itself is always in: no division by 0
    level = (boot * pool[..., None, :]).sum(-1, keepdims=True)
    upper = np.quantile(boot - level, q, axis=-2)
    return {
        "smoothed": observed,
        "upper": upper,
        "robust": upper >= edge,
        "plateau": (observed * pool).sum(-1),
    }


def classify_zones(temperatures, accuracy, robust, collapse_drop: float) -> list[str]:
    """Zone of each grid temperature from avg@n and the robust mask (see the module docstring).

    >>> classify_zones([0.6, 1.0, 1.4, 1.6], [0.74, 0.73, 0.66, 0.5], [1, 1, 0, 0], 0.10)
    ['robust', 'robust', 'exploration', 'collapse']
    """
    t, a = np.asarray(temperatures, float), np.asarray(accuracy, float)
    r = np.asarray(robust, bool)
    if not len(t) == len(a) == len(r) or len(t) == 0:
        raise ValueError(
            f"need one accuracy and one robust flag per temperature, got {len(t)}, {len(a)}, {len(r)}"
        )
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"temperatures must be strictly ascending, got {list(t)}")
    if np.isnan(a).any():
        raise ValueError(
            f"accuracy is NaN at temperatures {list(t[np.isnan(a)])} (nothing graded?)"
        )
    peak, onset = int(np.argmax(a)), len(a)
    for i in range(peak + 1, len(a)):
        if a[i] < a[peak] - collapse_drop - 1e-12:
            onset = i
            break
    robust_below = [i for i in range(onset) if r[i]] or [peak]
    lo, hi = min(robust_below), max(robust_below)
    zones = ["cold"] * lo + ["robust"] * (hi - lo + 1) + ["exploration"] * (onset - hi - 1)
    return zones + ["collapse"] * (len(a) - onset)


def choose_initial(temperatures, zones) -> Choice:
    """Stage 1: the highest robust temperature (start of controlled exploration)."""
    robust = [t for t, z in zip(temperatures, zones, strict=True) if z == "robust"]
    chosen = float(max(robust))
    if chosen == float(max(temperatures)):
        return Choice(
            chosen,
            f"accuracy is not significantly below the plateau up to the top of the grid "
            f"({chosen:g}); extend the grid upward to find where it leaves",
            grid_exhausted=True,
        )
    if chosen == float(min(temperatures)):
        return Choice(
            chosen,
            f"accuracy is best at the bottom of the grid ({chosen:g}) and significantly lower "
            "from the next temperature on: no plateau on this grid; extend it downward to see one",
            grid_exhausted=True,
        )
    return Choice(
        chosen,
        f"highest temperature whose accuracy is not significantly below the plateau: {chosen:g}",
    )


def stage1_zones(
    per_problem: np.ndarray, temperatures, cfg: ProbeConfig, weights: np.ndarray
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Zones of one probe (problems x temperatures accuracies) and its plateau test."""
    test = plateau_test(
        per_problem,
        weights,
        robust_tolerance=cfg.robust_tolerance,
        significance=cfg.significance,
    )
    zones = classify_zones(temperatures, per_problem.mean(0), test["robust"], cfg.collapse_drop)
    return zones, test


def choice_stability(
    per_problem: np.ndarray, temperatures, cfg: ProbeConfig, *, seed: int = 0
) -> np.ndarray:
    """Share of problem resamples for which the stage-1 rule chooses each grid temperature.

    The whole rule (its own bootstrap included) is rerun on cfg.stability_resamples resamples of
    the problems: how much the choice would move with another draw of problems and samples.
    """
    n = per_problem.shape[0]
    rng = np.random.default_rng(seed + 1)
    resampled = per_problem[rng.integers(0, n, size=(cfg.stability_resamples, n))]
    weights = bootstrap_weights(n, cfg.n_bootstrap, seed)
    robust = plateau_test(
        resampled,
        weights,
        robust_tolerance=cfg.robust_tolerance,
        significance=cfg.significance,
    )["robust"]
    counts = np.zeros(len(temperatures))
    for x, r in zip(resampled, robust, strict=True):
        zones = classify_zones(temperatures, x.mean(0), r, cfg.collapse_drop)
        counts[max(i for i, z in enumerate(zones) if z == "robust")] += 1
    return counts / len(resampled)


def match_diversity(
    temperatures,
    distinct4,
    zones,
    *,
    target: float,
    previous_temperature: float,
    match_tolerance: float,
) -> Choice:
    """Stage k>1: the temperature whose distinct-4 best matches `target` (see module docstring).

    >>> match_diversity([1.4, 1.45, 1.5], [0.55, 0.62, 0.7], ["robust"] * 3, target=0.63,
    ...                 previous_temperature=1.4, match_tolerance=0.02).temperature
    1.45
    """
    cands = [
        (abs(d - target), t, d)
        for t, d, z in zip(temperatures, distinct4, zones, strict=True)
        if t >= previous_temperature - 1e-9 and z != "collapse" and not np.isnan(d)
    ]
    if not cands:
        return Choice(
            float(previous_temperature),
            f"no grid temperature >= {previous_temperature:g} outside collapse: kept the previous one",
            matched=False,
        )
    dist, t, d = min(cands)  # tuples sort by distance, then by temperature (ties: lower)
    top = max(c[1] for c in cands)
    matched = dist <= match_tolerance + 1e-12
    why = "within" if matched else "NOT within"
    return Choice(
        float(t),
        f"distinct-4 {d:.3f} at {t:g} is closest to the previous stage's {target:.3f} "
        f"({why} tolerance {match_tolerance:g}), searching temperatures >= {previous_temperature:g}",
        grid_exhausted=(t == top and d < target - match_tolerance),
        matched=bool(matched),
    )


def choose_temperature(
    table: pd.DataFrame,
    cfg: ProbeConfig,
    *,
    samples: pd.DataFrame,
    stage: int = 1,
    previous: dict | None = None,
    seed: int = 0,
) -> dict:
    """Zones and the plateau test into `table` (in place) and the "probe/..." metrics.

    `table`: per_temperature(samples); `samples`: the graded samples (the bootstrap resamples
    their problems). Columns added: zone, acc_smoothed, upper_vs_plateau, robust, chosen_share.
    """
    temps, _, per_problem = accuracy_matrix(samples)
    if temps != [float(t) for t in table.temperature]:
        raise ValueError(f"samples cover temperatures {temps}, the table {list(table.temperature)}")
    weights = bootstrap_weights(per_problem.shape[0], cfg.n_bootstrap, seed)
    zones, test = stage1_zones(per_problem, temps, cfg, weights)
    shares = choice_stability(per_problem, temps, cfg, seed=seed)
    table["zone"] = zones
    table["acc_smoothed"] = test["smoothed"]
    table["upper_vs_plateau"] = test["upper"]
    table["robust"] = test["robust"]
    table["chosen_share"] = shares
    if stage == 1:
        auto, method = choose_initial(temps, zones), "plateau_bootstrap"
        extra = {}
    else:
        if not previous:
            raise ValueError(f"stage {stage} re-probe needs the previous probe's metrics")
        auto = match_diversity(
            temps,
            list(table.distinct4),
            zones,
            target=previous["probe/distinct4_at_chosen"],
            previous_temperature=previous["probe/chosen_temperature"],
            match_tolerance=cfg.match_tolerance,
        )
        method = "match_diversity"
        extra = {
            "probe/target_distinct4": previous["probe/distinct4_at_chosen"],
            "probe/previous_temperature": previous["probe/chosen_temperature"],
            "probe/matched": auto.matched,
        }
    overridden = cfg.override_temperature is not None
    chosen = float(cfg.override_temperature) if overridden else auto.temperature
    at = _interp(table, chosen)
    return {
        "probe/stage": stage,
        "probe/method": method,
        "probe/rule": RULE,
        "probe/automatic_temperature": auto.temperature,
        "probe/reason": auto.reason,
        "probe/grid_exhausted": auto.grid_exhausted,
        "probe/overridden": overridden,
        "probe/chosen_temperature": chosen,
        "probe/distinct4_at_chosen": at["distinct4"],
        "probe/accuracy_at_chosen": at["accuracy"],
        "probe/best_accuracy": float(table.accuracy.max()),
        "probe/plateau_accuracy": float(test["plateau"]),
        # Stage 1's choice under resampling of the problems (a re-probe's match is not resampled).
        "probe/choice_stability": {f"{t:g}": float(x) for t, x in zip(temps, shares, strict=True)},
        "probe/stability_of_choice": float(shares[temps.index(auto.temperature)])
        if stage == 1
        else None,
        "probe/robust_tolerance": cfg.robust_tolerance,
        "probe/significance": cfg.significance,
        "probe/n_bootstrap": cfg.n_bootstrap,
        "probe/collapse_drop": cfg.collapse_drop,
        **extra,
    }


def _interp(table: pd.DataFrame, t: float) -> dict:
    """Accuracy and distinct-4 at t (exact on the grid, linear between points, clamped outside)."""
    ok = table.dropna(subset=["distinct4"])
    d4 = float(np.interp(t, ok.temperature, ok.distinct4)) if len(ok) else float("nan")
    return {"accuracy": float(np.interp(t, table.temperature, table.accuracy)), "distinct4": d4}


def previous_reference(run_dir: str | Path, stage: int) -> dict:
    """The previous stage probe's metrics (what a re-probe matches)."""
    step = artifacts.step_dir(run_dir, artifacts.PROBE, stage - 1, create=False)
    path = step / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(
            f"stage {stage} re-probe matches stage {stage - 1}'s diversity, but {path} is missing: "
            f"run 01_temperature_probe with STAGE={stage - 1} first"
        )
    return artifacts.read_json(path)


def paper_reference(model_name: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The paper's Qwen3-4B curve (accuracy, distinct-4) when the model is a Qwen3-4B, else None."""
    return (PAPER_QWEN3_4B, PAPER_QWEN3_4B_DISTINCT4) if "qwen3-4b" in model_name.lower() else None
