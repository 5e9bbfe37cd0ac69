"""Running the temperature probe (RECIPE.md §1): sample and grade a grid, resume it, tabulate it.

Each grid temperature's graded samples (`policy.rollouts.rollout`) are stored as one finished
part under ``<step>/partial/`` (`artifacts.resume`) with a fingerprint of everything that
determines them (model, checkpoint, weights, toy world, seed, sizes); a rerun reuses finished
temperatures and redoes the rest. `per_temperature` turns the samples into
accuracy (avg@n, 95% bootstrap CI over problems), distinct-4 and truncation rate; the choice of
temperature is made by polaris_lib.probe.zones (the rule).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import artifacts, data, metrics
from polaris_lib.artifacts.resume import PartStore
from polaris_lib.config.sections import ProbeConfig
from polaris_lib.figure_style import run_caption
from polaris_lib.policy.load import policy_key
from polaris_lib.policy.rollouts import rollout
from polaris_lib.probe.zones import ZONES

log = logging.getLogger(__name__)

ARTIFACTS = [
    "config.json",
    "metrics.json",
    "samples.parquet",
    "per_temperature.parquet",
    "fig_probe.png",
    "fig_truncation.png",
]
"""What a finished probe step holds (finish_step checks them)."""
SAMPLE_COLUMNS = [
    "temperature",
    "problem_id",
    "sample_idx",
    "text",
    "n_tokens",
    "finished",
    "truncated",
    "correct",
]


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


def run_grid(
    score_fn, problems: pd.DataFrame, cfg: ProbeConfig, out: str | Path, *, key: dict
) -> pd.DataFrame:
    """Graded samples of every grid temperature, each stored when done; done ones are reused.

    `score_fn(temperature)` returns the graded samples (polaris_lib.policy.rollouts.rollout's
    table) for the probe problems; `key` (model, checkpoint, weights, seed, ...) goes into each
    temperature's fingerprint, so a partial grid from another model or setting is redone.
    """
    store = PartStore(Path(out) / "partial")
    base = dict(
        key,
        problems=list(problems.problem_id),
        n=cfg.n_samples,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        max_new_tokens=cfg.max_new_tokens,
    )
    tables = []
    for t in cfg.temperatures:
        name, part_key = f"T{t:.4f}", dict(temperature=t, **base)
        if store.done(name, part_key):
            log.info("probe: temperature %g already sampled, reusing it", t)
            tables.append(store.read(name))
            continue
        s = score_fn(t)
        s.insert(0, "temperature", float(t))
        tables.append(store.write(name, s[SAMPLE_COLUMNS], part_key, rows=len(s)))
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- wiring
def probe_problems(run) -> pd.DataFrame:
    """The probe set: the toy 'probe' split, or the catalog dataset's first n after a seeded shuffle."""

    n = run.probe.n_problems
    if run.probe.dataset == "toy":
        return data.load_dataset("toy", split="probe", n=n or 64, toy_cfg=run.toy, seed=run.seed)
    df = data.load_dataset(run.probe.dataset)
    df = df.sample(frac=1.0, random_state=run.seed).reset_index(drop=True)
    return df.head(n).reset_index(drop=True) if n else df


def run_probe(
    model,
    tokenizer,
    run,
    out: str | Path,
    problems: pd.DataFrame,
    *,
    checkpoint: str | None = None,
    grader=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Sample and grade the whole grid for `run.probe` (resuming done temperatures)."""
    cfg = run.probe

    def score_fn(t: float) -> pd.DataFrame:
        # Seed per temperature (not per grid position), so growing the grid keeps old samples valid.
        seed = run.seed * 100_003 + int(round(t * 1000))
        graded, _ = rollout(
            model,
            tokenizer,
            problems,
            n=cfg.n_samples,
            temperature=t,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            max_new_tokens=cfg.max_new_tokens,
            seed=seed,
            suffix=run.model.instruction_suffix,
            thinking=run.model.thinking,
            grader=grader,
            progress=progress,
        )
        return graded

    key = dict(
        **policy_key(run, checkpoint),
        seed=run.seed,
        suffix=run.model.instruction_suffix,
    )
    return run_grid(score_fn, problems, cfg, out, key=key)


def save(out: str | Path, samples: pd.DataFrame, table: pd.DataFrame, decision: dict) -> dict:
    """Write samples.parquet, per_temperature.parquet and the probe metrics."""
    out = Path(out)
    artifacts.write_parquet(out / "samples.parquet", samples[SAMPLE_COLUMNS])
    artifacts.write_parquet(out / "per_temperature.parquet", table)
    return artifacts.update_metrics(out, decision)


def figure_caption(run, stage: int, n_problems: int) -> str:
    """Figure caption: preset, model, seed, stage and probe size."""
    p = run.probe
    return run_caption(
        run,
        f"stage {stage}",
        f"{p.dataset}: {n_problems} problems × {p.n_samples} samples",
        f"max {p.max_new_tokens} tokens",
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
