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
        rows.append(
            dict(
                checkpoint=r["checkpoint"],
                benchmark=r["benchmark"],
                kit=100 * r["avg"],
                kit_lo=100 * r["ci_lo"],
                kit_hi=100 * r["ci_hi"],
                paper_model=ref,
                paper=paper,
            )
        )
    return pd.DataFrame(rows)
