"""Summary tables of an evaluation (RECIPE.md §7), computed from a responses table alone.

Input: the tidy responses table of `polaris_lib.evaluate.run` (one row per response: checkpoint,
benchmark, problem_id, sample_idx, text, n_tokens, truncated, correct, reason). Every number in
the 05 notebook and the report comes from these functions, so a regraded table re-summarises.
The 95% interval of avg@k is a percentile bootstrap over *problems* (`metrics.bootstrap_ci`) of
each problem's mean over its k samples: problems are what a benchmark draws, samples are not
independent of their problem.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polaris_lib.metrics import bootstrap_ci, pass_at_k, per_problem

INTERVAL_METHOD = "95% percentile bootstrap over problems (per-problem mean over k samples)"
PAIR = ["checkpoint", "benchmark"]
FORMAT_REASONS = ("no_think_close", "no_boxed", "answer_too_long")
"""Grader reasons that mean a finished response broke the answer format (rewards.py)."""

# RECIPE.md §7 reference results, avg@k in percent (POLARIS blog, 2025-06-20).
PAPER_RESULTS = {
    "Qwen3-4B": dict(aime24=73.8, aime25=65.6, minerva=43.6, olympiad=62.2, amc23=87.2),
    "POLARIS-4B-Preview": dict(aime24=81.2, aime25=79.4, minerva=44.0, olympiad=69.1, amc23=94.8),
    "DeepSeek-R1-Distill-Qwen-7B": dict(
        aime24=55.0, aime25=39.7, minerva=36.7, olympiad=56.8, amc23=81.9
    ),
    "POLARIS-7B-Preview": dict(aime24=72.6, aime25=52.6, minerva=40.2, olympiad=65.4, amc23=89.0),
    "Qwen3-32B": dict(aime24=81.4, aime25=72.9, minerva=44.2, olympiad=66.7, amc23=92.4),
}
PAPER_MODEL_IDS = {
    "Qwen/Qwen3-4B": "Qwen3-4B",
    "POLARIS-Project/Polaris-4B-Preview": "POLARIS-4B-Preview",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": "DeepSeek-R1-Distill-Qwen-7B",
    "POLARIS-Project/Polaris-7B-Preview": "POLARIS-7B-Preview",
    "Qwen/Qwen3-32B": "Qwen3-32B",
}
"""Hub id of a preset's model -> its row in PAPER_RESULTS."""
PAPER_TRAINED = {
    "Qwen3-4B": "POLARIS-4B-Preview",
    "DeepSeek-R1-Distill-Qwen-7B": "POLARIS-7B-Preview",
}
"""The paper's POLARIS-trained model for a base model: what a trained checkpoint compares with."""


def _samples_per_problem(g: pd.DataFrame) -> int:
    """k of one pair; every problem must have the same number of distinct samples."""
    dup = g[g.duplicated(["problem_id", "sample_idx"])]
    if len(dup):
        raise ValueError(
            f"duplicate (problem_id, sample_idx) rows: {dup.problem_id.head(5).tolist()}"
        )
    counts = g.groupby("problem_id").size()
    if counts.nunique() > 1:
        short = counts[counts < counts.max()].index[:5].tolist()
        raise ValueError(f"problems with fewer than {counts.max()} samples: {short}")
    return int(counts.iloc[0])


def summarize(responses: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (checkpoint, benchmark): avg@k, interval, pass@k, solve counts, lengths, rates.

    format_error_rate counts finished (untruncated) responses the grader rejected for format;
    truncated responses are counted by truncation_rate instead; ungraded = gold unparseable.
    """
    rows = []
    for (ck, b), g in responses.groupby(PAIR, sort=False):
        k = _samples_per_problem(g)
        pp = per_problem(g)
        lo, hi = bootstrap_ci(pp["accuracy"].to_numpy(), n_boot=n_boot, seed=seed)
        length = g["n_tokens"].astype(float)
        trunc = g["truncated"].astype(bool)
        fmt = g["reason"].isin(FORMAT_REASONS) & ~trunc
        rows.append(dict(
            checkpoint=ck, benchmark=b, k=k, problems=len(pp), responses=len(g),
            avg=float(pp["accuracy"].mean()), ci_lo=lo, ci_hi=hi,
            pass_at_k=_mean_pass(pp, k), solve_none=int((pp["c"] == 0).sum()),
            solve_all=int((pp["c"] == pp["n"]).sum()), mean_len=float(length.mean()),
            median_len=float(length.median()), p90_len=float(length.quantile(0.9)),
            max_len=int(length.max()), truncation_rate=float(trunc.mean()),
            format_error_rate=float(fmt.mean()), ungraded=int(g["correct"].isna().sum()),
        ))  # fmt: skip
    out = pd.DataFrame(rows)
    out.attrs["interval"] = INTERVAL_METHOD
    return out


def _mean_pass(pp: pd.DataFrame, k: int) -> float:
    ok = pp[pp["n"] >= k]
    vals = [pass_at_k(int(n), int(c), k) for n, c in zip(ok["n"], ok["c"], strict=True)]
    return float(np.mean(vals)) if vals else float("nan")


def pass_at_k_curve(responses: pd.DataFrame) -> pd.DataFrame:
    """pass@k for k = 1..n per pair (unbiased estimator, mean over problems)."""
    rows = []
    for (ck, b), g in responses.groupby(PAIR, sort=False):
        pp = per_problem(g)
        for k in range(1, int(pp["n"].max()) + 1):
            rows.append(dict(checkpoint=ck, benchmark=b, k=k, pass_at_k=_mean_pass(pp, k)))
    return pd.DataFrame(rows)


def per_problem_table(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per (checkpoint, benchmark, problem): samples, correct, accuracy, mean length."""
    g = responses.assign(correct=pd.to_numeric(responses["correct"], errors="coerce"))
    t = g.groupby([*PAIR, "problem_id"], sort=False).agg(
        n=("correct", "count"), c=("correct", "sum"), accuracy=("correct", "mean"),
        mean_len=("n_tokens", "mean"), truncated=("truncated", "mean"),
    )  # fmt: skip
    return t.reset_index().astype({"c": int})


def length_bucket(n_tokens, length: int) -> pd.Series:
    """Response-length bucket against a length L: '< L/2', 'L/2-L', '> L' (the paper's YaRN cut)."""
    n = pd.Series(np.asarray(n_tokens), dtype=float)
    labels = bucket_labels(length)
    return pd.Series(np.select([n < length / 2, n <= length], labels[:2], labels[2]), index=n.index)


def bucket_labels(length: int) -> list[str]:
    """The three bucket names for a length L, in order."""
    return [f"< {length / 2:g}", f"{length / 2:g}-{length:g}", f"> {length:g}"]


def length_bucket_accuracy(responses: pd.DataFrame, length: int, by=PAIR) -> pd.DataFrame:
    """Accuracy and share of responses per length bucket (L = `length` tokens) within each group."""
    df = responses.assign(bucket=length_bucket(responses["n_tokens"], length).to_numpy())
    t = df.groupby([*by, "bucket"], sort=False)["correct"].agg(n="size", accuracy="mean")
    t = t.reset_index()
    t["share"] = t["n"] / t.groupby(list(by))["n"].transform("sum")
    t["bucket"] = pd.Categorical(t["bucket"], bucket_labels(length), ordered=True)
    order = t.groupby(list(by), sort=False).ngroup()  # groups keep their order of appearance
    return (
        t.assign(_g=order).sort_values(["_g", "bucket"]).drop(columns="_g").reset_index(drop=True)
    )


COMPARISON_COLUMNS = ["checkpoint", "benchmark", "kit", "kit_lo", "kit_hi", "paper_model", "paper"]


def paper_comparison(summary: pd.DataFrame, model_id: str) -> pd.DataFrame:
    """Kit avg@k (percent, with interval) beside the paper's for the matching model; empty if none.

    The base checkpoint compares with the paper's base model row; trained checkpoints with the
    paper's POLARIS model trained from that base (when the preset's model is a base model).
    """
    base_row = PAPER_MODEL_IDS.get(model_id)
    if base_row is None:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    rows = []
    for r in summary.to_dict("records"):
        ref = base_row if r["checkpoint"] == "base" else PAPER_TRAINED.get(base_row, base_row)
        paper = PAPER_RESULTS[ref].get(r["benchmark"])
        rows.append(dict(checkpoint=r["checkpoint"], benchmark=r["benchmark"],
                         kit=100 * r["avg"], kit_lo=100 * r["ci_lo"], kit_hi=100 * r["ci_hi"],
                         paper_model=ref, paper=paper))  # fmt: skip
    return pd.DataFrame(rows)


def eval_metrics(summary: pd.DataFrame, harness_only: dict[str, bool] | None = None) -> dict:
    """metrics.json keys: eval/<ckpt>/<bench>/..., and eval/<bench>/... for the last checkpoint."""
    out: dict = {"eval/interval": INTERVAL_METHOD}
    last = summary["checkpoint"].iloc[-1] if len(summary) else None
    keys = ("pass_at_k", "ci_lo", "ci_hi", "truncation_rate", "format_error_rate", "mean_len")
    for r in summary.to_dict("records"):
        vals = {f"avg@{r['k']}": r["avg"], f"pass@{r['k']}": r["pass_at_k"],
                **{k: r[k] for k in keys if k != "pass_at_k"},
                "solve_none": r["solve_none"], "solve_all": r["solve_all"]}  # fmt: skip
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
    return {k: v for k, v in metrics.items()
            if k.count("/") == 2 and k.split("/")[2].startswith(("avg@", "harness_only"))}  # fmt: skip


REQUIRED = ["config.json", "metrics.json", "responses.parquet", "summary.parquet",
            "pass_at_k.parquet", "per_problem.parquet", "length_buckets.parquet",
            "paper_comparison.parquet", "fig_avg_by_checkpoint.png", "fig_pass_at_k.png",
            "fig_accuracy_by_length.png", "fig_length_hist.png"]  # fmt: skip
"""Artifacts of a finished 05 step."""


def describe(cfg) -> str:
    """Figure caption: preset, model, seed and the sampling settings."""
    e = cfg.eval
    return (
        f"preset {cfg.preset} · model {cfg.model.name_or_path} · seed {cfg.seed} · "
        f"T {e.temperature}, top_p {e.top_p}, top_k {e.top_k or 'off'}, "
        f"≤ {e.max_new_tokens} new tokens · interval: {INTERVAL_METHOD}"
    )


def check_artifacts(step) -> dict:
    """Validate a finished 05 folder (columns, summary consistent with responses); its metrics."""
    from pathlib import Path

    from polaris_lib.artifacts import files as artifacts

    step = Path(step)
    missing = [f for f in REQUIRED if not (step / f).exists()]
    if missing:
        raise ValueError(f"{step}: missing {missing}")
    responses = pd.read_parquet(step / "responses.parquet")
    from polaris_lib.artifacts.resume import RESPONSE_COLUMNS

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
