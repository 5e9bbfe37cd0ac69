"""Figures of the temperature probe (notebook 01)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polaris_lib.figure_style import PAPER_STYLE, caption, new_figure

ZONE_COLORS = {
    "cold": "#d9e6f2",
    "robust": "#dff0d8",
    "exploration": "#fcf3cf",
    "collapse": "#f6d5d5",
}
ZONE_LABELS = {
    "cold": "cold (below best)",
    "robust": "robust generation",
    "exploration": "controlled exploration",
    "collapse": "performance collapse",
}


def probe_curve(
    table: pd.DataFrame,
    chosen: float,
    *,
    caption_text: str,
    reference: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    chosen_label: str = "chosen",
):
    """Accuracy (with 95% CI) and distinct-4 against temperature, zones shaded, choice marked.

    `table`: per_temperature.parquet (temperature, accuracy, acc_lo, acc_hi, distinct4, zone,
    and chosen_share when the rule ran: a lower panel of how often each temperature is chosen
    under resampling of the problems). `reference`: the paper's (accuracy, distinct-4) tables,
    drawn dashed.
    """
    stability = "chosen_share" in table
    if stability:
        fig, (ax, ax_share) = new_figure(
            7.2, 5.4, nrows=2, sharex=True, gridspec_kw={"height_ratios": [3.2, 1]}
        )
    else:
        fig, ax = new_figure(7.2, 4.2)
    t = table.temperature.to_numpy()
    edges = np.concatenate([[t[0] - 0.05], (t[1:] + t[:-1]) / 2, [t[-1] + 0.05]])
    seen = set()
    for i, zone in enumerate(table.zone):
        label = None if zone in seen else ZONE_LABELS[zone]
        seen.add(zone)
        ax.axvspan(edges[i], edges[i + 1], color=ZONE_COLORS[zone], alpha=0.8, lw=0, label=label)
    ax.fill_between(t, table.acc_lo, table.acc_hi, color="C0", alpha=0.2, lw=0)
    ax.plot(t, table.accuracy, "o-", color="C0", label="accuracy (avg@n, 95% CI)")
    ax2 = ax.twinx()
    ax2.plot(t, table.distinct4, "s-", color="C3", label="distinct-4")
    if reference is not None:
        acc_ref, d4_ref = reference
        ax.plot(
            acc_ref.temperature,
            acc_ref.accuracy,
            marker="o",
            **PAPER_STYLE,
            label="paper Qwen3-4B AIME24 accuracy",
        )
        ax2.plot(
            d4_ref.temperature,
            d4_ref.distinct4,
            marker="s",
            color="C3",
            alpha=0.5,
            linestyle="--",
            lw=1.2,
            label="paper Qwen3-4B distinct-4",
        )
    ax.axvline(chosen, color="k", lw=1.5)
    ax.annotate(
        f"{chosen_label} T={chosen:g}",
        (chosen, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -12),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xlabel("sampling temperature")
    ax.set_ylabel("accuracy (fraction correct)", color="C0")
    ax2.set_ylabel("distinct-4 (unique / all 4-grams)", color="C3")
    ax.set_xlim(edges[0], edges[-1])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # Above the axes: inside, the crossing curves leave no free corner.
    ax2.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=3)
    if stability:
        widths = np.diff(edges) * 0.7
        ax_share.bar(t, table.chosen_share, width=widths, color="0.45")
        ax_share.axvline(chosen, color="k", lw=1.5)
        for x, share in zip(t, table.chosen_share, strict=True):
            if share >= 0.005:
                ax_share.annotate(f"{share:.0%}", (x, share), ha="center", va="bottom", fontsize=7)
        ax_share.set_ylim(0, 1.15)
        ax_share.set_ylabel("chosen under\nresampling", fontsize=8)
        ax_share.set_xlabel("sampling temperature")
        ax.set_xlabel("")
    caption(fig, caption_text)
    return fig


def truncation_curve(table: pd.DataFrame, *, caption_text: str):
    """Truncation rate and mean response length against temperature (is the budget too short?)."""
    fig, ax = new_figure(6.0, 3.4)
    ax.plot(table.temperature, table.truncation_rate, "o-", color="C2", label="truncation rate")
    ax.set_xlabel("sampling temperature")
    ax.set_ylabel("truncated responses (fraction)")
    ax2 = ax.twinx()
    ax2.plot(table.temperature, table.mean_tokens, "^--", color="C4", label="mean length")
    ax2.set_ylabel("mean response length (tokens)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    caption(fig, caption_text)
    return fig
