"""Figures of difficulty curation (notebook 02)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polaris_lib.figure_style import PALETTE, caption, new_figure


def pass_rate_histogram(buckets: pd.DataFrame, *, caption_text: str, temperature: float):
    """Problems per pass-rate bucket 0/n..n/n, kept vs dropped (the J / mirrored-J figure).

    `buckets`: curate.bucket_table (bucket, kept, dropped).
    """
    fig, ax = new_figure(6.4, 3.8)
    x = np.arange(len(buckets))
    ax.bar(x, buckets.kept, color=PALETTE["kept"], label="kept")
    ax.bar(
        x,
        buckets.dropped,
        bottom=buckets.kept,
        color=PALETTE["dropped"],
        label="dropped (solved n/n)",
    )
    for xi, total in zip(x, buckets.problems, strict=True):
        ax.annotate(str(int(total)), (xi, total), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, buckets.bucket)
    ax.set_ylim(0, max(1, int(buckets.problems.max())) * 1.12)  # room for the count labels
    ax.set_xlabel(f"pass rate k/n of the policy at T={temperature:g}")
    ax.set_ylabel("problems (count)")
    ax.set_title("Difficulty of the pool for the policy being trained")
    ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig


def pass_rate_by_level(
    levels: pd.DataFrame, *, caption_text: str, column: str = "level", xlabel: str | None = None
):
    """Mean pass rate per level (MATH 1-5, or toy term count): harder should score lower."""
    fig, ax = new_figure(5.6, 3.4)
    ax.bar(levels[column].astype(str), levels.pass_rate, color="C1")
    for xi, (p, m) in enumerate(zip(levels.pass_rate, levels.problems, strict=True)):
        ax.annotate(f"n={int(m)}", (xi, p), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel(xlabel or f"MATH {column} (1 = easiest)")
    ax.set_ylabel("mean pass rate (fraction)")
    ax.set_ylim(0, 1)
    caption(fig, caption_text)
    return fig


def difficulty_comparison(table: pd.DataFrame, *, caption_text: str):
    """Our pass rate against the pool's published one (POLARIS-53K: R1-Distill-7B's), jittered."""
    fig, ax = new_figure(4.6, 4.2)
    rng = np.random.default_rng(0)  # jitter only separates overlapping points
    jx = rng.uniform(-0.015, 0.015, len(table))
    jy = rng.uniform(-0.015, 0.015, len(table))
    ax.scatter(table.reference_pass_rate + jx, table.pass_rate + jy, s=8, alpha=0.5)
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls=":")
    ax.set_xlabel("published difficulty (pass rate, fraction)")
    ax.set_ylabel("our pass rate (fraction)")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    caption(fig, caption_text)
    return fig


def sanity_figure(view: str, table: pd.DataFrame, *, caption_text: str):
    """The figure of one curate.sanity_tables view (level, difficulty = toy terms, reference)."""
    if view == "reference":
        return difficulty_comparison(table, caption_text=caption_text)
    label = "MATH level (1 = easiest)" if view == "level" else "toy problem: number of terms"
    return pass_rate_by_level(table, caption_text=caption_text, column=view, xlabel=label)
