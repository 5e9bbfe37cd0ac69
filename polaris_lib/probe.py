"""Temperature probe (RECIPE.md §1): accuracy and distinct-4 over a temperature grid, and the choice.

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
true boundary lies above the grid, so extend it upward.

Stage k > 1 — re-probe. RL lowers diversity, so the probe of stage k-1's checkpoint picks the
temperature whose distinct-4 is closest to the previous probe's distinct-4 at its chosen
temperature (the target), among grid temperatures >= the previous temperature and outside the
collapse zone; ties go to the lower temperature. "probe/matched" says whether the distance is
within match_tolerance. If no grid temperature qualifies, the previous temperature is kept.

distinct-4 (RECIPE §1): a problem's n responses pooled, whitespace-split, unique 4-grams / all
4-grams (metrics.distinct_n), averaged over problems.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import artifacts, metrics
from polaris_lib.config import ProbeConfig

log = logging.getLogger(__name__)

ZONES = ("cold", "robust", "exploration", "collapse")
RULE = (
    "stage 1: best = max avg@n over the grid; robust = contiguous run around the best with "
    "accuracy >= best - robust_tolerance (ends at the first leaver going up); collapse = from "
    "the first temperature above it with accuracy < best - collapse_drop; exploration = between; "
    "chosen = highest robust temperature (start of controlled exploration; grid top if all "
    "robust). stage k>1: grid temperature >= the previous one, outside collapse, whose distinct-4 "
    "is closest to the previous probe's distinct-4 at its chosen temperature (ties: lower)."
)
ARTIFACTS = [
    "config.json", "metrics.json", "samples.parquet", "per_temperature.parquet", "fig_probe.png",
    "fig_truncation.png",
]  # fmt: skip
"""What a finished probe step holds (finish_step checks them)."""
SAMPLE_COLUMNS = [
    "temperature", "problem_id", "sample_idx", "text", "n_tokens", "finished", "truncated",
    "correct",
]  # fmt: skip

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


def decide(
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


# ----------------------------------------------------------------------------- measuring
def per_temperature(samples: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per temperature: accuracy (avg@n) with a 95% bootstrap CI, distinct-4, truncation."""
    rows = []
    for t, g in samples.groupby("temperature", sort=True):
        pp = metrics.per_problem(g)["accuracy"].to_numpy()
        lo, hi = metrics.bootstrap_ci(pp, n_boot=n_boot, seed=seed)
        d4 = [metrics.distinct_n(list(x), 4) for _, x in g.groupby("problem_id").text]
        rows.append(
            dict(
                temperature=float(t),
                accuracy=float(np.nanmean(pp)),
                acc_lo=lo,
                acc_hi=hi,
                distinct4=float(np.nanmean(d4)) if not np.isnan(d4).all() else float("nan"),
                truncation_rate=metrics.truncation_rate(g.truncated),
                mean_tokens=float(g.n_tokens.mean()),
                n_problems=int(g.problem_id.nunique()),
                n_samples=len(g),
            )
        )
    return pd.DataFrame(rows)


def grade(samples: pd.DataFrame, problems: pd.DataFrame, grader) -> pd.DataFrame:
    """Add `correct` (1/0, NaN for an unparseable gold) against each problem's accepted answers."""
    col = "answers" if "answers" in problems.columns else "answer"
    gold = dict(zip(problems.problem_id, problems[col], strict=True))
    missing = sorted(set(samples.problem_id) - set(gold))
    if missing:
        raise KeyError(f"samples for problems without a gold answer: {missing[:5]}")
    scores = grader.grade_batch(list(samples.text), [gold[p] for p in samples.problem_id])
    out = samples.copy()
    out["correct"] = pd.array([np.nan if s is None else float(s) for s in scores], dtype=float)
    return out


def fingerprint(**what) -> str:
    """Content hash of everything that determines one temperature's samples (resume key)."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_grid(
    sample_fn, problems: pd.DataFrame, cfg: ProbeConfig, out: str | Path, *, key: dict, grader
) -> pd.DataFrame:
    """Sample + grade every grid temperature, persisting each one; done temperatures are skipped.

    `sample_fn(temperature)` returns polaris_lib.sampling.sample's table for the probe problems;
    `key` (model, checkpoint, seed, ...) goes into each temperature's fingerprint, so a partial
    grid from a different model or setting is redone rather than reused.
    """
    part = Path(out) / "partial"
    part.mkdir(parents=True, exist_ok=True)
    base = dict(
        key, problems=list(problems.problem_id), n=cfg.n_samples, top_p=cfg.top_p,
        top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens,
    )  # fmt: skip
    tables = []
    for t in cfg.temperatures:
        fp, stem = fingerprint(temperature=t, **base), part / f"T{t:.4f}"
        meta = stem.with_suffix(".json")
        if meta.exists() and artifacts.read_json(meta).get("fingerprint") == fp:
            log.info("probe: temperature %g already sampled, reusing %s", t, stem)
            tables.append(pd.read_parquet(stem.with_suffix(".parquet")))
            continue
        s = grade(sample_fn(t), problems, grader)
        s.insert(0, "temperature", float(t))
        artifacts.write_parquet(stem.with_suffix(".parquet"), s[SAMPLE_COLUMNS])
        artifacts.write_json(meta, {"fingerprint": fp, "rows": len(s)})  # written last = done
        tables.append(s[SAMPLE_COLUMNS])
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- wiring
def probe_problems(run) -> pd.DataFrame:
    """The probe set: the toy 'probe' split, or the catalog dataset's first n after a seeded shuffle."""
    from polaris_lib import data

    n = run.probe.n_problems
    if run.probe.dataset == "toy":
        return data.load_dataset("toy", split="probe", n=n or 64, toy_cfg=run.toy, seed=run.seed)
    df = data.load_dataset(run.probe.dataset)
    df = df.sample(frac=1.0, random_state=run.seed).reset_index(drop=True)
    return df.head(n).reset_index(drop=True) if n else df


def run_probe(
    model, tokenizer, run, out: str | Path, problems: pd.DataFrame, *, checkpoint: str | None = None,
    grader=None, progress: bool = True,
) -> pd.DataFrame:  # fmt: skip
    """Sample and grade the whole grid for `run.probe` (resuming done temperatures)."""
    from polaris_lib import rewards, sampling

    cfg = run.probe
    grader = grader or rewards.default_grader(thinking=run.model.thinking)

    def sample_fn(t: float) -> pd.DataFrame:
        # Seed per temperature (not per grid position), so growing the grid keeps old samples valid.
        seed = run.seed * 100_003 + int(round(t * 1000))
        return sampling.sample(
            model, tokenizer, problems, n=cfg.n_samples, temperature=t, top_p=cfg.top_p,
            top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, seed=seed,
            suffix=run.model.instruction_suffix, progress=progress,
        )  # fmt: skip

    key = dict(
        model=run.model.name_or_path, checkpoint=checkpoint, stamp=_stamp(checkpoint),
        seed=run.seed, suffix=run.model.instruction_suffix, toy=run.to_dict().get("toy"),
    )  # fmt: skip
    return run_grid(sample_fn, problems, cfg, out, key=key, grader=grader)


def _stamp(checkpoint: str | None) -> float | None:
    """Modification time of a checkpoint's files (a retrained stage invalidates old samples)."""
    if checkpoint is None or not Path(checkpoint).exists():
        return None
    return max(p.stat().st_mtime for p in Path(checkpoint).iterdir())


def save(out: str | Path, samples: pd.DataFrame, table: pd.DataFrame, decision: dict) -> dict:
    """Write samples.parquet, per_temperature.parquet and the probe metrics."""
    out = Path(out)
    artifacts.write_parquet(out / "samples.parquet", samples[SAMPLE_COLUMNS])
    artifacts.write_parquet(out / "per_temperature.parquet", table)
    return artifacts.update_metrics(out, decision)


def paper_reference(model_name: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The paper's Qwen3-4B curve (accuracy, distinct-4) when the model is a Qwen3-4B, else None."""
    return (PAPER_QWEN3_4B, PAPER_QWEN3_4B_DISTINCT4) if "qwen3-4b" in model_name.lower() else None


def describe(run, stage: int, n_problems: int) -> str:
    """Figure caption: preset, model, stage, seed and probe size."""
    p = run.probe
    return (
        f"preset {run.preset} · model {run.model.name_or_path} · stage {stage} · seed {run.seed} · "
        f"{p.dataset}: {n_problems} problems × {p.n_samples} samples · max {p.max_new_tokens} tokens"
    )


def check_artifacts(step: str | Path) -> dict:
    """Validate a finished probe folder (tables' columns, one choice); returns its metrics."""
    step = Path(step)
    samples = pd.read_parquet(step / "samples.parquet")
    table = pd.read_parquet(step / "per_temperature.parquet")
    m = artifacts.read_json(step / "metrics.json")
    if list(samples.columns) != SAMPLE_COLUMNS:
        raise ValueError(f"{step}/samples.parquet columns {list(samples.columns)}")
    need = {"temperature", "accuracy", "acc_lo", "acc_hi", "distinct4", "truncation_rate", "zone"}
    if not need <= set(table.columns) or not set(table.zone) <= set(ZONES):
        raise ValueError(f"{step}/per_temperature.parquet lacks {need - set(table.columns)}")
    if sorted(set(samples.temperature)) != table.temperature.tolist():
        raise ValueError(f"{step}: samples and per-temperature table cover different grids")
    keys = (
        "probe/chosen_temperature",
        "probe/rule",
        "probe/overridden",
        "probe/distinct4_at_chosen",
    )
    if missing := [k for k in keys if k not in m]:
        raise ValueError(f"{step}/metrics.json lacks {missing}")
    return m
