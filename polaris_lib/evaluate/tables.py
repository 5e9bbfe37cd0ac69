"""What notebook 05 records from an evaluation (RECIPE.md §7): metrics keys, headline, artifacts.

The summary tables themselves (avg@k with its interval, pass@k curves, per-problem and length
tables) are `polaris_lib.metrics`'; the paper's numbers and the comparison are `polaris_lib.paper`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib import artifacts
from polaris_lib.figure_style import run_caption
from polaris_lib.metrics import (
    INTERVAL_METHOD,
    PAIRED_METHOD,
    SAMPLING_METHOD,
    protocol_legend,
    summarize,
)
from polaris_lib.policy.rollouts import RESPONSE_COLUMNS


def eval_metrics(summary: pd.DataFrame, harness_only: dict[str, bool] | None = None) -> dict:
    """metrics.json keys: eval/<ckpt>/<bench>/..., and eval/<bench>/... for the last checkpoint."""
    out: dict = {
        "eval/interval": summary.attrs.get("interval", INTERVAL_METHOD),
        "eval/sampling_interval": SAMPLING_METHOD,
    }
    last = summary["checkpoint"].iloc[-1] if len(summary) else None
    keys = (
        "pass_at_k",
        "ci_lo",
        "ci_hi",
        "sampling_lo",
        "sampling_hi",
        "half_width",
        "truncation_rate",
        "format_error_rate",
        "mean_len",
    )
    for r in summary.to_dict("records"):
        vals = {
            f"avg@{r['k']}": r["avg"],
            f"pass@{r['k']}": r["pass_at_k"],
            **{k: r[k] for k in keys if k != "pass_at_k" and k in r},
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


def paired_metrics(paired: pd.DataFrame) -> dict:
    """metrics.json keys eval/paired/<b>_vs_<a>/<benchmark>/...: each checkpoint vs the reference."""
    out: dict = {"eval/paired/method": PAIRED_METHOD}
    keys = ("diff", "diff_lo", "diff_hi", "diff_sampling_lo", "diff_sampling_hi", "p_value")
    for r in paired.to_dict("records"):
        p = f"eval/paired/{r['b']}_vs_{r['a']}/{r['benchmark']}"
        out.update({f"{p}/{k}": r[k] for k in (*keys, "sign_p", "wins", "losses", "ties")})
    return out


def audit_metrics(agreement: pd.DataFrame) -> dict:
    """metrics.json keys eval/<ckpt>/<bench>/grader_agreement and .../grader_disagreements."""
    out: dict = {"eval/grader_audit/second_rule": agreement.attrs.get("second_rule", "")}
    for r in agreement.to_dict("records"):
        p = f"eval/{r['checkpoint']}/{r['benchmark']}"
        out[f"{p}/grader_agreement"] = r["agreement"]
        out[f"{p}/grader_disagreements"] = r["kit_only"] + r["authors_only"]
    return out


def half_width_table(summary: pd.DataFrame) -> pd.DataFrame:
    """avg@k with the achieved half-widths beside it (percentage points): with the problems held
    fixed (what more samples shrink) and over problems (what they cannot)."""
    t = summary[["checkpoint", "benchmark", "k", "problems"]].copy()
    t["avg@k (%)"] = 100 * summary["avg"]
    t["± problems fixed"] = 100 * summary["half_width"]
    t["problems-fixed interval"] = [
        f"[{100 * lo:.1f}, {100 * hi:.1f}]"
        for lo, hi in zip(summary["sampling_lo"], summary["sampling_hi"], strict=True)
    ]
    t["± over problems"] = 100 * (summary["ci_hi"] - summary["ci_lo"]) / 2
    t["over-problems interval"] = [
        f"[{100 * lo:.1f}, {100 * hi:.1f}]"
        for lo, hi in zip(summary["ci_lo"], summary["ci_hi"], strict=True)
    ]
    return t


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
    "paired.parquet",
    "protocol.parquet",
    "grader_audit.parquet",
    "grader_disagreements.parquet",
    "selection.parquet",
    "fig_avg_by_checkpoint.png",
    "fig_pass_at_k.png",
    "fig_accuracy_by_length.png",
    "fig_length_hist.png",
]
"""Artifacts of a finished 05 step."""


CAPTION_WIDTH = 110
"""Characters per caption line of notebook 05's figures (the narrowest is 6.4 inches wide)."""


def figure_caption(cfg, protocol: pd.DataFrame | None = None) -> str:
    """Figure caption: preset, model, seed and the protocol stamp.

    With a protocol table (`protocol_table`) every distinct protocol is spelled out with its
    mark, the samples per problem and the truncation rate of each pair; without one, the
    sampling settings of the config.
    """
    e = cfg.eval
    if protocol is None or protocol.empty:
        return run_caption(
            cfg,
            f"T {e.temperature}, top_p {e.top_p}, top_k {e.top_k or 'off'}, "
            f"≤ {e.max_new_tokens} new tokens",
            f"interval: {INTERVAL_METHOD}",
        )
    trunc = "; ".join(
        f"{r.checkpoint}/{r.benchmark} [{r.protocol}] {100 * r.truncation_rate:.0f}% truncated, "
        f"context used {r.context_used}"
        for r in protocol.itertuples()
    )
    lines = [run_caption(cfg, "95% intervals: problems fixed and over problems")]
    lines += protocol_legend(protocol).splitlines() + [trunc]
    # wrapped: a long caption line would widen the saved figure (tight bounding box)
    return "\n".join(textwrap.fill(line, CAPTION_WIDTH, subsequent_indent="    ") for line in lines)


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
