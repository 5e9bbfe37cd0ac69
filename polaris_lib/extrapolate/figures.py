"""Figures of notebook 04 (length extrapolation): one function per figure, tidy tables in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polaris_lib.figure_style import PAPER_STYLE, caption, new_figure

VARIANT_LABELS = {"none": "no RoPE scaling", "yarn": "YaRN", "linear": "linear interpolation"}
VARIANT_COLORS = {"none": "C0", "yarn": "C1", "linear": "C2"}
"""One colour per RoPE variant in every figure of the step."""


def _order(variants) -> list[str]:
    seen = list(dict.fromkeys(variants))
    return [v for v in VARIANT_LABELS if v in seen] + [v for v in seen if v not in VARIANT_LABELS]


def avg_vs_max_length(avg: pd.DataFrame, caption_text: str, trained_length: int):
    """avg@k (95% bootstrap interval) against the response budget, one line per RoPE variant."""
    fig, ax = new_figure(6.4, 4.0)
    for v in _order(avg["variant"]):
        g = avg[avg["variant"] == v].sort_values("max_length")
        err = 100 * np.vstack([g["avg"] - g["ci_lo"], g["ci_hi"] - g["avg"]]).astype(float)
        ax.errorbar(
            g["max_length"],
            100 * g["avg"],
            yerr=np.abs(err),
            marker="o",
            capsize=4,
            label=VARIANT_LABELS.get(v, v),
            color=VARIANT_COLORS.get(v),
        )
    ax.axvline(trained_length, **PAPER_STYLE, label=f"trained length L = {trained_length}")
    ax.set_xlabel("maximum response length (tokens)")
    ax.set_ylabel("avg@k (% correct)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy against the response budget, with and without YaRN")
    ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig


def accuracy_by_length_bucket(buckets: pd.DataFrame, caption_text: str):
    """Accuracy per response-length bucket (< L/2, L/2-L, > L) per variant, largest budget."""
    top = buckets[buckets["max_length"] == buckets["max_length"].max()]
    labels = list(top["bucket"].cat.categories)
    variants = _order(top["variant"])
    fig, ax = new_figure(6.4, 4.0)
    w = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        g = top[top["variant"] == v].set_index("bucket").reindex(labels)
        pos = np.arange(len(labels)) + i * w
        ax.bar(
            pos,
            100 * g["accuracy"].fillna(0),
            width=w,
            label=VARIANT_LABELS.get(v, v),
            color=VARIANT_COLORS.get(v),
        )
        for p, n in zip(pos, g["n"].fillna(0).astype(int), strict=True):
            ax.text(p, 1, f"n={n}", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - w / 2, labels)
    ax.set_xlabel(f"response length (tokens), budget {int(top['max_length'].max())}")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy by response length (bars with n = 0 are empty buckets)")
    ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig


def loss_by_position(loss: pd.DataFrame, caption_text: str, context: int, extended: int):
    """Teacher-forced per-token loss against absolute position, one line per RoPE variant.

    `context` marks the model's original max positions, `extended` the context YaRN claims
    (original x factor).
    """
    fig, ax = new_figure(6.4, 4.0)
    if loss.empty:  # no reference traces for this model: say so on the figure
        ax.text(0.5, 0.5, loss.attrs.get("note", "no data"), ha="center", transform=ax.transAxes)
    for v in _order(loss["variant"]):
        g = loss[loss["variant"] == v]
        ax.plot(
            g["position"],
            g["loss"],
            label=VARIANT_LABELS.get(v, v),
            linewidth=1.4,
            marker=".",
            color=VARIANT_COLORS.get(v),
        )
    ax.axvline(context, **PAPER_STYLE, label=f"original context ({context})")
    ax.axvline(extended, color="0.6", linestyle=":", label=f"YaRN context ({extended})")
    ax.set_yscale("log")
    ax.set_xlabel("position in the sequence (tokens)")
    ax.set_ylabel("per-token loss (nats, mean over a position bin)")
    ax.set_title("Loss on held-out reference traces by position")
    ax.legend(fontsize=8)
    caption(fig, caption_text)
    return fig
