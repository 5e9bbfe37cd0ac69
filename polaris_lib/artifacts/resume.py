"""The evaluation's resumable store: one finished parquet (+ settings json) per pair (RECIPE.md §7).

A pair is one (checkpoint, benchmark) of polaris_lib/evaluate/run.py (or one (RoPE variant, length)
of polaris_lib/extrapolate/run.py). Its parquet is written first and its settings json last, so the
json marks it done; a pair made with other settings is redone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polaris_lib.artifacts import files as artifacts

RESPONSE_COLUMNS = [
    "checkpoint",
    "benchmark",
    "problem_id",
    "sample_idx",
    "text",
    "n_tokens",
    "finished",
    "truncated",
    "answers",
    "correct",
    "reason",
]
"""responses.parquet: one row per sampled response; `answers` (gold forms) makes it regradable."""

PAIRS = "pairs"
"""Sub-folder of the step holding one finished parquet (+ settings json) per pair."""


def _pair_file(out: Path, checkpoint: str, benchmark: str) -> Path:
    return out / PAIRS / f"{checkpoint}__{benchmark}.parquet"


def pair_done(out: str | Path, checkpoint: str, benchmark: str, settings: dict) -> bool:
    """A pair is finished when its parquet exists and was made with these settings."""
    path = _pair_file(Path(out), checkpoint, benchmark)
    meta = path.with_suffix(".json")
    if not path.exists() or not meta.exists():
        return False
    return artifacts.read_json(meta).get("settings") == artifacts._jsonable(settings)


def write_pair(out, checkpoint: str, benchmark: str, df, settings: dict, timing: dict) -> None:
    """Write a finished pair: the responses parquet, then its settings json (the 'done' mark)."""
    file = _pair_file(Path(out), checkpoint, benchmark)
    artifacts.write_parquet(file, df[RESPONSE_COLUMNS])
    artifacts.write_json(file.with_suffix(".json"), dict(settings=settings, **timing))


def read_pair(out, checkpoint: str, benchmark: str) -> pd.DataFrame:
    """The responses of one finished pair."""
    return pd.read_parquet(_pair_file(Path(out), checkpoint, benchmark))


def timings(out: str | Path) -> pd.DataFrame:
    """Per-pair sampling and grading seconds recorded by run_evaluation (throughput, grading)."""
    rows = []
    for meta in sorted((Path(out) / PAIRS).glob("*.json")):
        ck, b = meta.stem.split("__", 1)
        d = artifacts.read_json(meta)
        rows.append(
            dict(checkpoint=ck, benchmark=b, **{k: v for k, v in d.items() if k != "settings"})
        )
    return pd.DataFrame(rows)
