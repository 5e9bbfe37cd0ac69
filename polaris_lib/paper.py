"""Every published POLARIS number the kit compares with (RECIPE.md §7), and the comparison table."""

from __future__ import annotations

import pandas as pd

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


NO_PAPER_NUMBER = "no published POLARIS number"
CONTAMINATION_RESISTANT = {
    "aime26": "AIME 2026: after POLARIS's release (June 2025), so not in its training data",
    "hmmt25": "HMMT February 2025: a competition the POLARIS evaluation did not use",
}
"""Catalog benchmarks the paper never reported on; they sit in the comparison as NO_PAPER_NUMBER."""

PAPER_PROTOCOL = (
    "paper: T 1.4 (AIME25 1.4-1.45) · top-p 1 · top-k 20 · ≤ 90K new tokens · YaRN ×1.5 (96K "
    "context) · avg@32 AIME, @8 AMC23, @4 Minerva/Olympiad · authors' grader (last \\boxed{})"
)
"""The protocol of every PAPER_RESULTS number (RECIPE §6-7)."""
COMPARISON_INTERVAL = (
    "kit_lo / kit_hi: 95% interval with the problems held fixed (sampling noise only): the "
    "paper's numbers are for these same problems, so problem resampling is not part of the gap"
)
COMPARISON_COLUMNS = [
    "checkpoint",
    "benchmark",
    "kit",
    "kit_lo",
    "kit_hi",
    "kit_protocol",
    "paper_model",
    "paper",
    "paper_protocol",
    "note",
]


def paper_comparison(
    summary: pd.DataFrame,
    model_id: str,
    protocol: pd.DataFrame | None = None,
    skipped: list[str] | tuple[str, ...] = (),
) -> pd.DataFrame:
    """Kit avg@k (percent, problems-fixed interval) beside the paper's for the matching model.

    Empty when the paper has no row for the model. The base checkpoint compares with the paper's
    base model row; trained checkpoints with the paper's POLARIS model trained from that base.
    The interval is the one with the problems held fixed (`metrics.sampling_interval`, the
    summary's sampling_lo / sampling_hi; older tables without them fall back to ci_lo / ci_hi):
    both numbers are on the same problems. Each row carries both protocols (kit_protocol: the
    protocol table's mark and stamp when given). Benchmarks the paper never reported (and
    `skipped` ones, not evaluated here) get paper = NaN and a note.
    """
    base_row = PAPER_MODEL_IDS.get(model_id)
    if base_row is None:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    stamps = {}
    if protocol is not None and not protocol.empty:
        legend = protocol.attrs.get("legend", {})
        stamps = {
            (r.checkpoint, r.benchmark): f"{r.protocol}: {legend.get(r.protocol, '')}"
            for r in protocol.itertuples()
        }
    lo_col, hi_col = (
        ("sampling_lo", "sampling_hi") if "sampling_lo" in summary else ("ci_lo", "ci_hi")
    )
    rows = []
    for r in summary.to_dict("records"):
        ref = base_row if r["checkpoint"] == "base" else PAPER_TRAINED.get(base_row, base_row)
        paper = PAPER_RESULTS[ref].get(r["benchmark"])
        rows.append(
            dict(
                checkpoint=r["checkpoint"],
                benchmark=r["benchmark"],
                kit=100 * r["avg"],
                kit_lo=100 * r[lo_col],
                kit_hi=100 * r[hi_col],
                kit_protocol=stamps.get((r["checkpoint"], r["benchmark"]), "kit (see protocol)"),
                paper_model=ref,
                paper=paper,
                paper_protocol=PAPER_PROTOCOL if paper is not None else "",
                note="" if paper is not None else _no_number(r["benchmark"]),
            )
        )
    ref = PAPER_TRAINED.get(base_row, base_row)
    for b in skipped:
        rows.append(
            dict(
                checkpoint="",
                benchmark=b,
                kit=float("nan"),
                kit_lo=float("nan"),
                kit_hi=float("nan"),
                kit_protocol="",
                paper_model=ref,
                paper=PAPER_RESULTS[ref].get(b),
                paper_protocol="",
                note="not evaluated here (its data is not on this machine); " + _no_number(b),
            )
        )
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out.attrs["interval"] = COMPARISON_INTERVAL
    return out


def _no_number(benchmark: str) -> str:
    why = CONTAMINATION_RESISTANT.get(benchmark)
    return f"{NO_PAPER_NUMBER} ({why})" if why else NO_PAPER_NUMBER


def paper_reference() -> pd.DataFrame:
    """Every published avg@k (%), one row per model, plus the catalog's benchmarks the paper
    never reported, marked NO_PAPER_NUMBER (the reference table when the model is not theirs)."""
    ref = pd.DataFrame(PAPER_RESULTS).T.rename_axis("model").reset_index()
    ref = ref.astype({c: object for c in ref.columns if c != "model"})
    for b in CONTAMINATION_RESISTANT:
        ref[b] = NO_PAPER_NUMBER
    ref.attrs["protocol"] = PAPER_PROTOCOL
    return ref
