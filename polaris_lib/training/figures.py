"""Figures of a GRPO stage (notebook 03): one function per figure, tidy table in, Figure out.

Inputs are steps.parquet (one row per optimizer step, TRL's keys and polaris/...), the dataset
sizes table and the held-out comparison table; nothing is computed here beyond selecting columns.
"""

from __future__ import annotations

import pandas as pd

from polaris_lib.figure_style import PALETTE, caption, new_figure, step_axis


def _has(steps: pd.DataFrame, col: str) -> bool:
    return col in steps.columns and steps[col].notna().any()


def fig_reward(steps: pd.DataFrame, note: str):
    """Mean reward per step (post-rescue, what TRL trains on) and the pre-rescue pass rate."""
    fig, ax = new_figure()
    ax.plot(steps.step, steps.reward, marker="o", ms=3, label="mean reward (after rescue)")
    if _has(steps, "polaris/pass_rate_pre_rescue"):
        ax.plot(
            steps.step,
            steps["polaris/pass_rate_pre_rescue"],
            ls="--",
            label="pass rate before rescue",
        )
    ax.set(xlabel="optimizer step", ylabel="mean reward (fraction correct)", ylim=(-0.02, 1.02))
    step_axis(ax)
    ax.set_title("Reward per step")
    ax.legend(loc="best", fontsize=8)
    caption(fig, note)
    return fig


def fig_group_mix(steps: pd.DataFrame, note: str):
    """Fractions of all-0 / all-1 / mixed groups before substitution, and what was done."""
    fig, ax = new_figure()
    cols = ["polaris/frac_all0", "polaris/frac_mixed", "polaris/frac_all1"]
    labels = ["all 0 (no correct)", "mixed (informative)", "all 1 (all correct)"]
    ax.stackplot(steps.step, *[steps[c] for c in cols], labels=labels, alpha=0.75)
    ax.plot(steps.step, steps["polaris/frac_substituted"], "k--", lw=1.2, label="substituted")
    skipped = steps[steps["polaris/skipped"] > 0]
    if len(skipped):
        ax.scatter(skipped.step, [1.02] * len(skipped), marker="v", color="red", label="skipped")
    ax.set(xlabel="optimizer step", ylabel="fraction of groups", ylim=(0, 1.06))
    step_axis(ax)
    ax.set_title("Group mix before substitution")
    ax.legend(loc="lower left", fontsize=7)
    caption(fig, note)
    return fig


def fig_lengths(steps: pd.DataFrame, note: str, budget: int):
    """Mean response length (tokens) and truncation rate per step, with the stage's budget."""
    fig, ax = new_figure()
    ax.plot(steps.step, steps["completions/mean_length"], marker="o", ms=3, label="mean length")
    ax.axhline(budget, color="0.4", ls=":", label=f"budget {budget} tokens")
    ax.set(xlabel="optimizer step", ylabel="response length (tokens)")
    step_axis(ax)
    ax2 = ax.twinx()
    ax2.plot(steps.step, steps["completions/clipped_ratio"], color="C3", label="truncation rate")
    ax2.set(ylabel="truncation rate (fraction)", ylim=(-0.02, 1.02))
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="best", fontsize=8)
    ax.set_title("Response length and truncation")
    caption(fig, note)
    return fig


def fig_clip_entropy(steps: pd.DataFrame, note: str):
    """PPO clip fraction (clip-higher region) and token entropy, when TRL logged them."""
    fig, ax = new_figure()
    for col, label in [
        ("clip_ratio/region_mean", "clipped tokens (any side)"),
        ("clip_ratio/high_mean", "clipped above 1+eps_high"),
        ("clip_ratio/low_mean", "clipped below 1-eps_low"),
    ]:
        if _has(steps, col):
            ax.plot(steps.step, steps[col], marker=".", label=label)
    ax.set(xlabel="optimizer step", ylabel="fraction of tokens")
    step_axis(ax)
    if _has(steps, "entropy"):
        ax2 = ax.twinx()
        ax2.plot(steps.step, steps.entropy, color="C4", ls="--", label="entropy")
        ax2.set(ylabel="mean token entropy (nats)")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Clip fraction and entropy (skipped steps have none)")
    caption(fig, note)
    return fig


def fig_dataset_sizes(sizes: pd.DataFrame, note: str):
    """Training problems per stage and how many the > 0.9 easy-drop removed after it."""
    fig, ax = new_figure()
    x = sizes.stage.astype(str)
    ax.bar(x, sizes.kept, color=PALETTE["kept"], label="kept for the next stage")
    ax.bar(
        x,
        sizes.dropped,
        bottom=sizes.kept,
        color=PALETTE["dropped"],
        label="easy-dropped (> threshold)",
    )
    for _, r in sizes.iterrows():
        ax.text(
            str(r.stage),
            r.trained,
            f"{int(r.trained)} trained",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set(xlabel="stage", ylabel="problems")
    ax.set_title("Dataset size per stage")
    ax.legend(fontsize=8)
    caption(fig, note)
    return fig


def fig_heldout(table: pd.DataFrame, note: str):
    """Held-out accuracy (avg@k) with 95% bootstrap intervals: warm start vs after the stage."""
    fig, ax = new_figure(5.0, 4.0)
    err = [table.accuracy - table.lo, table.hi - table.accuracy]
    ax.bar(
        table.label,
        table.accuracy,
        yerr=err,
        capsize=6,
        color=[PALETTE["base"], "C0"][: len(table)],
    )
    for i, r in enumerate(table.itertuples()):
        ax.text(i, r.hi + 0.01, f"{r.accuracy:.1%}", ha="center", va="bottom", fontsize=9)
    ax.set(ylabel="held-out accuracy (avg@k)", ylim=(0, 1.1))
    ax.set_title("Held-out accuracy at the evaluation temperature")
    caption(fig, note)
    return fig
