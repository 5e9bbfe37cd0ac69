"""Running the temperature probe (RECIPE.md §1): sample and grade a grid, resume it, tabulate it.

Each grid temperature's graded samples are written atomically under ``<step>/partial/`` with a
fingerprint of everything that determines them (model, checkpoint, toy world, seed, sizes); a
rerun reuses finished temperatures and redoes the rest. `per_temperature` turns the samples into
accuracy (avg@n, 95% bootstrap CI over problems), distinct-4 and truncation rate; the choice of
temperature is made by polaris_lib.probe.zones (the rule).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import metrics
from polaris_lib.artifacts import files as artifacts
from polaris_lib.config.sections import ProbeConfig
from polaris_lib.probe.zones import ZONES

log = logging.getLogger(__name__)

ARTIFACTS = [
    "config.json", "metrics.json", "samples.parquet", "per_temperature.parquet", "fig_probe.png",
    "fig_truncation.png",
]  # fmt: skip
"""What a finished probe step holds (finish_step checks them)."""
SAMPLE_COLUMNS = [
    "temperature", "problem_id", "sample_idx", "text", "n_tokens", "finished", "truncated",
    "correct",
]  # fmt: skip


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

    `sample_fn(temperature)` returns polaris_lib.policy.sampling.sample's table for the probe problems;
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
        # Explicit names: Path.with_suffix would read "T0.4000" as stem "T0" + suffix ".4000".
        fp, name = fingerprint(temperature=t, **base), f"T{t:.4f}"
        meta, data = part / f"{name}.json", part / f"{name}.parquet"
        if meta.exists() and artifacts.read_json(meta).get("fingerprint") == fp:
            log.info("probe: temperature %g already sampled, reusing %s", t, data)
            tables.append(pd.read_parquet(data))
            continue
        s = grade(sample_fn(t), problems, grader)
        s.insert(0, "temperature", float(t))
        artifacts.write_parquet(data, s[SAMPLE_COLUMNS])
        artifacts.write_json(meta, {"fingerprint": fp, "rows": len(s)})  # written last = done
        tables.append(s[SAMPLE_COLUMNS])
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- wiring
def probe_problems(run) -> pd.DataFrame:
    """The probe set: the toy 'probe' split, or the catalog dataset's first n after a seeded shuffle."""
    from polaris_lib.data import catalog as data

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
    from polaris_lib.grading import grader as rewards
    from polaris_lib.policy import sampling

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
        seed=run.seed, suffix=run.model.instruction_suffix, world=world_key(run),
    )  # fmt: skip
    return run_grid(sample_fn, problems, cfg, out, key=key, grader=grader)


def world_key(run) -> str | None:
    """The toy world's content hash (config + code version): a rebuilt toy invalidates samples."""
    if run.toy is None or run.model.name_or_path != "toy":
        return None
    from polaris_lib.toy.build import config_hash

    return config_hash(run.toy)


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
