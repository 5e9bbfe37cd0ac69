"""Figures of notebook 05 (evaluation): one function per figure, tidy tables in, Figure out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polaris_lib.figure_style import PAPER_STYLE, caption, new_figure


def _panels(n: int, width_each: float = 4.2, height: float = 3.6):
    fig, axes = new_figure(width_each * n, height, ncols=n, squeeze=False)
    return fig, list(axes[0])


def avg_by_checkpoint(summary: pd.DataFrame, caption_text: str, paper: pd.DataFrame | None = None):
    """avg@k (percent) per checkpoint, one line per benchmark, with both 95% intervals.

    Thin capped bars: the bootstrap over problems (generalisation); thick bars: the interval with
    the problems held fixed (sampling noise only), when the summary has it.

    `summary` is metrics.summarize's table; `paper` (paper.paper_comparison) adds the
    published values as dashed references.
    """
    fig, ax = new_figure(6.4, 4.0)
    order = list(dict.fromkeys(summary["checkpoint"]))
    x = np.arange(len(order))
    for b, g in summary.groupby("benchmark", sort=False):
        k = int(g["k"].max())
        g = g.set_index("checkpoint").reindex(order)
        y = 100 * g["avg"].to_numpy()
        err = 100 * np.abs(np.vstack([g["avg"] - g["ci_lo"], g["ci_hi"] - g["avg"]]).astype(float))
        line = ax.errorbar(x, y, yerr=err, marker="o", capsize=4, lw=1, label=f"{b} (avg@{k})")
        if {"sampling_lo", "sampling_hi"} <= set(g.columns):  # problems fixed: thick, no caps
            fixed = np.vstack([g["avg"] - g["sampling_lo"], g["sampling_hi"] - g["avg"]])
            ax.errorbar(
                x,
                y,
                yerr=100 * np.abs(fixed.astype(float)),
                fmt="none",
                elinewidth=5,
                alpha=0.45,
                color=line[0].get_color(),
            )
        ref = None if paper is None else paper[paper["benchmark"] == b]
        if ref is not None and ref["paper"].notna().any():
            ref = ref.set_index("checkpoint").reindex(order)["paper"]
            ax.plot(
                x,
                ref.to_numpy(float),
                **{**PAPER_STYLE, "color": line[0].get_color()},
                marker="_",
                markersize=14,
                label=f"{b}: paper",
            )
    ax.set_xticks(x, order)
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("avg@k (% correct)")
    ax.set_ylim(0, 100)
    ax.set_title(
        "Accuracy by checkpoint (95%: thin = over problems, thick = problems fixed)", fontsize=9
    )
    ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig


def pass_at_k_curves(curve: pd.DataFrame, caption_text: str):
    """pass@k against k (unbiased estimator), one panel per benchmark, one line per checkpoint."""
    benches = list(dict.fromkeys(curve["benchmark"]))
    fig, axes = _panels(len(benches))
    for ax, b in zip(axes, benches, strict=True):
        for ck, g in curve[curve["benchmark"] == b].groupby("checkpoint", sort=False):
            ax.plot(g["k"], 100 * g["pass_at_k"], marker="o", markersize=3, label=ck)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples per problem)")
        ax.set_ylabel("pass@k (%)")
        ax.set_ylim(0, 100)
        ax.set_title(b)
        ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig


def accuracy_by_length(buckets: pd.DataFrame, caption_text: str):
    """Accuracy per response-length bucket (metrics.length_bucket_accuracy) per checkpoint."""
    benches = list(dict.fromkeys(buckets["benchmark"]))
    fig, axes = _panels(len(benches))
    for ax, b in zip(axes, benches, strict=True):
        t = buckets[buckets["benchmark"] == b]
        labels = list(t["bucket"].cat.categories)
        cks = list(dict.fromkeys(t["checkpoint"]))
        w = 0.8 / max(1, len(cks))
        for i, ck in enumerate(cks):
            g = t[t["checkpoint"] == ck].set_index("bucket").reindex(labels)
            pos = np.arange(len(labels)) + i * w
            ax.bar(pos, 100 * g["accuracy"].fillna(0), width=w, label=ck)
            for p, n in zip(pos, g["n"].fillna(0).astype(int), strict=True):
                ax.text(p, 1, f"n={n}", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - w / 2, labels)
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(b)
        ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig


def length_histograms(responses: pd.DataFrame, caption_text: str, max_new_tokens: int):
    """Response-length distribution per benchmark and checkpoint; the budget as a dashed line."""
    benches = list(dict.fromkeys(responses["benchmark"]))
    fig, axes = _panels(len(benches))
    bins = np.linspace(0, max_new_tokens, 25)
    for ax, b in zip(axes, benches, strict=True):
        for ck, g in responses[responses["benchmark"] == b].groupby("checkpoint", sort=False):
            ax.hist(g["n_tokens"], bins=bins, histtype="step", linewidth=1.5, label=ck)
        ax.axvline(max_new_tokens, **PAPER_STYLE, label="max_new_tokens")
        ax.set_xlabel("response length (tokens)")
        ax.set_ylabel("responses")
        ax.set_title(b)
        ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig
