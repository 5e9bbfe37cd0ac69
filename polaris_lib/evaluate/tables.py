"""What notebook 05 records from an evaluation (RECIPE.md §7): metrics keys, headline, artifacts.

The summary tables themselves (avg@k with its interval, pass@k curves, per-problem and length
tables) are `polaris_lib.metrics`'; the paper's numbers and the comparison are `polaris_lib.paper`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import artifacts
from polaris_lib.evaluate.run import eval_context
from polaris_lib.figure_style import run_caption
from polaris_lib.metrics import INTERVAL_METHOD, summarize
from polaris_lib.policy.rollouts import RESPONSE_COLUMNS


def eval_metrics(summary: pd.DataFrame, harness_only: dict[str, bool] | None = None) -> dict:
    """metrics.json keys: eval/<ckpt>/<bench>/..., and eval/<bench>/... for the last checkpoint."""
    out: dict = {"eval/interval": summary.attrs.get("interval", INTERVAL_METHOD)}
    last = summary["checkpoint"].iloc[-1] if len(summary) else None
    keys = ("pass_at_k", "ci_lo", "ci_hi", "truncation_rate", "format_error_rate", "mean_len")
    for r in summary.to_dict("records"):
        vals = {
            f"avg@{r['k']}": r["avg"],
            f"pass@{r['k']}": r["pass_at_k"],
            **{k: r[k] for k in keys if k != "pass_at_k"},
            "solve_none": r["solve_none"],
            "solve_all": r["solve_all"],
        }
        flag = (harness_only or {}).get(r["benchmark"], False)
        prefixes = [f"eval/{r['checkpoint']}/{r['benchmark']}"]
        if r["checkpoint"] == last:
            prefixes.append(f"eval/{r['benchmark']}")
        for p in prefixes:
            out.update({f"{p}/{k}": v for k, v in vals.items()})
            out[f"{p}/harness_only"] = bool(flag)
    return out


def headline(metrics: dict) -> dict:
    """The last checkpoint's avg@k and harness_only flag per benchmark, from eval_metrics keys."""
    return {
        k: v
        for k, v in metrics.items()
        if k.count("/") == 2 and k.split("/")[2].startswith(("avg@", "harness_only"))
    }


ARTIFACTS = [
    "config.json",
    "metrics.json",
    "responses.parquet",
    "summary.parquet",
    "pass_at_k.parquet",
    "per_problem.parquet",
    "length_buckets.parquet",
    "paper_comparison.parquet",
    "fig_avg_by_checkpoint.png",
    "fig_pass_at_k.png",
    "fig_accuracy_by_length.png",
    "fig_length_hist.png",
]
"""Artifacts of a finished 05 step."""


def figure_caption(cfg) -> str:
    """Figure caption: preset, model, seed, the sampling settings and the context used."""
    e = cfg.eval
    rope = cfg.eval_rope()
    context = eval_context(cfg)
    return run_caption(
        cfg,
        f"T {e.temperature}, top_p {e.top_p}, top_k {e.top_k or 'off'}, "
        f"≤ {e.max_new_tokens} new tokens, context {context}"
        + (" (YaRN)" if rope == "yarn" else ""),
        f"interval: {INTERVAL_METHOD}",
    )


def check_artifacts(step) -> dict:
    """Validate a finished 05 folder (columns, summary consistent with responses); its metrics."""
    step = Path(step)
    missing = [f for f in ARTIFACTS if not (step / f).exists()]
    if missing:
        raise ValueError(f"{step}: missing {missing}")
    responses = pd.read_parquet(step / "responses.parquet")
    if list(responses.columns) != RESPONSE_COLUMNS:
        raise ValueError(f"{step}/responses.parquet columns {list(responses.columns)}")
    summary = pd.read_parquet(step / "summary.parquet")
    again = summarize(responses, n_boot=10)
    if not np.allclose(summary["avg"], again["avg"], equal_nan=True):
        raise ValueError(f"{step}: summary.parquet does not match responses.parquet")
    m = artifacts.read_json(step / "metrics.json")
    for r in summary.to_dict("records"):
        if f"eval/{r['benchmark']}/avg@{r['k']}" not in m:
            raise ValueError(f"{step}/metrics.json lacks eval/{r['benchmark']}/avg@{r['k']}")
    return m
