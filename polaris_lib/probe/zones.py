"""Temperature probe (RECIPE.md §1): zones of the accuracy/diversity curve and the choice of T.

Sampling and grading the grid, resuming it and tabulating it live in polaris_lib.probe.run.

The rule (also written into metrics.json as "probe/rule"):

Stage 1 — zones. Let a(T) be avg@n at each grid temperature (ascending) and best = max a(T).
- robust generation: the contiguous run of temperatures around the best one whose accuracy is
  >= best - robust_tolerance; it ends at the first temperature (going up) that leaves that band.
- controlled exploration: temperatures above the robust run not yet collapsed (a later return into
  the band does not make a temperature robust again: the zone ended at the first leaver).
- collapse: from the first temperature above the robust run with a(T) < best - collapse_drop, on.
- cold: temperatures below the robust run (accuracy not yet at its best; rare, e.g. repetition).
The chosen temperature is the highest robust one, i.e. the start of controlled exploration: "the
highest temperature whose accuracy has not yet left the robust zone" (Qwen3-4B: 1.4). When the
whole grid is robust (flat curve) that is the grid's top and "probe/grid_exhausted" is set: the
true boundary lies above the grid, so extend it upward. It is also set when only the grid's lowest
temperature is robust (accuracy falls from the start: no plateau is visible on this grid).

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
    "stage 1: best = max avg@n over the grid; robust = contiguous run around the best with "
    "accuracy >= best - robust_tolerance (ends at the first leaver going up); collapse = from "
    "the first temperature above it with accuracy < best - collapse_drop; exploration = between; "
    "chosen = highest robust temperature (start of controlled exploration; flagged "
    "grid_exhausted when it is the top or the bottom of the grid). stage k>1: grid temperature >= the previous one, outside collapse, whose distinct-4 "
    "is closest to the previous probe's distinct-4 at its chosen temperature (ties: lower)."
)


def rule_for(stage: int) -> str:
    """The rule of one stage in one line, for a notebook's log (RULE has both, ~600 characters)."""
    if stage <= 1:
        return (
            "stage 1 rule: the highest temperature whose accuracy stays within robust_tolerance "
            "of the best, i.e. the start of controlled exploration (full rule: probe.RULE)"
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
def classify_zones(
    temperatures, accuracy, robust_tolerance: float, collapse_drop: float
) -> list[str]:
    """Zone of each grid temperature (see the module docstring).

    >>> classify_zones([0.6, 1.0, 1.4, 1.6], [0.74, 0.73, 0.66, 0.5], 0.03, 0.10)
    ['robust', 'robust', 'exploration', 'collapse']
    """
    t, a = np.asarray(temperatures, float), np.asarray(accuracy, float)
    if len(t) != len(a) or len(t) == 0:
        raise ValueError(f"need one accuracy per temperature, got {len(t)} and {len(a)}")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"temperatures must be strictly ascending, got {list(t)}")
    if np.isnan(a).any():
        raise ValueError(
            f"accuracy is NaN at temperatures {list(t[np.isnan(a)])} (nothing graded?)"
        )
    best, peak = a.max(), int(np.argmax(a))
    in_band = a >= best - robust_tolerance - 1e-12  # 1e-12: a value exactly on the edge is inside
    lo = peak
    while lo > 0 and in_band[lo - 1]:
        lo -= 1
    hi = peak
    while hi + 1 < len(a) and in_band[hi + 1]:
        hi += 1
    zones = ["cold"] * lo + ["robust"] * (hi - lo + 1)
    collapsed = False
    for i in range(hi + 1, len(a)):
        collapsed = collapsed or a[i] < best - collapse_drop - 1e-12
        zones.append("collapse" if collapsed else "exploration")
    return zones


def choose_initial(temperatures, zones) -> Choice:
    """Stage 1: the highest robust temperature (start of controlled exploration)."""
    robust = [t for t, z in zip(temperatures, zones, strict=True) if z == "robust"]
    chosen = float(max(robust))
    if chosen == float(max(temperatures)):
        return Choice(
            chosen,
            f"accuracy never left the robust zone up to the top of the grid ({chosen:g}); "
            "extend the grid upward to find where it does",
            grid_exhausted=True,
        )
    if chosen == float(min(temperatures)):
        return Choice(
            chosen,
            f"accuracy is best at the bottom of the grid ({chosen:g}) and leaves the robust zone "
            "at the next temperature: no plateau on this grid; extend it downward to see one",
            grid_exhausted=True,
        )
    return Choice(
        chosen, f"highest temperature whose accuracy has not left the robust zone: {chosen:g}"
    )


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
    table: pd.DataFrame, cfg: ProbeConfig, *, stage: int = 1, previous: dict | None = None
) -> dict:
    """Zones into `table` (in place) and the "probe/..." metrics of the choice."""
    table["zone"] = classify_zones(
        table.temperature, table.accuracy, cfg.robust_tolerance, cfg.collapse_drop
    )
    if stage == 1:
        auto, method = choose_initial(list(table.temperature), list(table.zone)), "zones"
        extra = {}
    else:
        if not previous:
            raise ValueError(f"stage {stage} re-probe needs the previous probe's metrics")
        auto = match_diversity(
            list(table.temperature),
            list(table.distinct4),
            list(table.zone),
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
        "probe/robust_tolerance": cfg.robust_tolerance,
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
