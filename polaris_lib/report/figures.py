"""Figures of the run report (06): views across steps and overlays of several runs.

Each function takes a tidy table with a `run` column (one value for a single-run report, several
in compare mode) and returns a Figure; `polaris_lib.report.build` assembles the tables from the run
folders' files. Nothing is computed here beyond grouping rows into lines.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from polaris_lib.figure_style import (
    PALETTE,
    PAPER_STYLE,
    caption,
    literal,
    rate_axis,
    stage_color,
    step_axis,
)

_STAGE_SHADE = ("#f2f2f2", "#ffffff")
RATE_METRICS = ("reward (mean)", "truncated fraction", "mixed groups (fraction)")
"""Timeline metrics that are rates: drawn on a 0-1 axis."""


def _colors(runs) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {r: cycle[i % len(cycle)] for i, r in enumerate(dict.fromkeys(runs))}


def _panels(n: int, width_each: float = 4.4, height: float = 3.4):
    fig, axes = plt.subplots(1, n, figsize=(width_each * n, height), squeeze=False)
    return fig, list(axes[0])


def training_timeline(steps: pd.DataFrame, boundaries: pd.DataFrame, caption_text: str):
    """Training metrics of all stages on one step axis; dashed lines at stage boundaries.

    steps: run, stage, global_step, metric, value. boundaries: run, stage, start, end (global step).
    """
    metrics = list(dict.fromkeys(steps["metric"]))
    cols = min(len(metrics), 2)
    rows = -(-len(metrics) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.0 * rows), squeeze=False)
    axes = list(grid.flat)[: len(metrics)]
    for ax in list(grid.flat)[len(metrics) :]:
        ax.set_visible(False)
    colors = _colors(steps["run"])
    multi = steps["run"].nunique() > 1
    for ax, metric in zip(axes, metrics, strict=True):  # single run: one colour per stage
        first = boundaries[boundaries["run"] == boundaries["run"].iloc[0]]
        for i, b in enumerate(first.itertuples()):
            ax.axvspan(b.start, b.end, color=_STAGE_SHADE[i % 2], zorder=0)
            ax.text(
                b.start,
                1.0,
                f" stage {b.stage}",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                va="top",
                color=stage_color(b.stage) if not multi else "0.35",
            )
        for b in boundaries.itertuples():
            if b.stage > 1:
                ax.axvline(b.start, **{**PAPER_STYLE, "color": colors[b.run] if multi else "0.5"})
        rows = steps[steps["metric"] == metric]
        for (run, stage), g in rows.groupby(["run", "stage"], sort=False):
            g = g.sort_values("global_step")
            first_of_run = stage == rows[rows["run"] == run]["stage"].iloc[0]
            ax.plot(
                g["global_step"],
                g["value"],
                color=colors[run] if multi else stage_color(stage),
                lw=1.3,
                label=literal(run) if multi and first_of_run else None,
            )
        ax.set_xlabel("optimizer step (all stages)")
        ax.set_ylabel(metric)
        ax.set_title(metric, fontsize=10)
        step_axis(ax)
        if metric in RATE_METRICS:
            rate_axis(ax)
    if multi:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig


def difficulty_before_after(hist: pd.DataFrame, caption_text: str):
    """Problems per pass-rate bucket k/n, before curation (pool) and after (training set).

    hist: run, set ("before: pool" | "after: curated"), k, bucket, problems.
    """
    runs = list(dict.fromkeys(hist["run"]))
    fig, axes = _panels(len(runs), width_each=5.2)
    for ax, run in zip(axes, runs, strict=True):
        g = hist[hist["run"] == run]
        sets = list(dict.fromkeys(g["set"]))
        width = 0.8 / len(sets)
        for i, name in enumerate(sets):
            s = g[g["set"] == name].sort_values("k")
            color = PALETTE["pool"] if "pool" in name else PALETTE["kept"]
            x = s["k"] + (i - (len(sets) - 1) / 2) * width
            ax.bar(x, s["problems"], width, label=name, color=color)
        ticks = g.drop_duplicates("k").sort_values("k")
        ax.set_xticks(ticks["k"], ticks["bucket"], fontsize=7)
        ax.set_xlabel("pass rate of the policy (k correct of n samples)")
        ax.set_ylabel("problems")
        ax.set_title(
            literal(run) if len(runs) > 1 else "difficulty before and after curation", fontsize=9
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig


def easy_drop(table: pd.DataFrame, caption_text: str):
    """Problems kept and dropped (> threshold mean reward) at the end of each stage.

    table: run, stage, kept, dropped.
    """
    runs = list(dict.fromkeys(table["run"]))
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    width = 0.8 / len(runs)
    colors = _colors(runs)
    for i, run in enumerate(runs):
        g = table[table["run"] == run].sort_values("stage")
        x = g["stage"] + (i - (len(runs) - 1) / 2) * width
        multi = len(runs) > 1
        ax.bar(
            x,
            g["kept"],
            width,
            color=colors[run] if multi else PALETTE["kept"],
            alpha=0.45 if multi else 1.0,
            label=f"{literal(run)}: kept" if multi else "kept for the next stage",
        )
        ax.bar(
            x,
            g["dropped"],
            width,
            bottom=g["kept"],
            color=colors[run] if multi else PALETTE["dropped"],
            label=f"{literal(run)}: dropped (easy)" if multi else "dropped as easy",
        )
    ax.set_xticks(sorted(table["stage"].unique()))
    ax.set_xlabel("end of stage")
    ax.set_ylabel("training problems")
    step_axis(ax)
    ax.legend(fontsize=7)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig


def probe_overlay(table: pd.DataFrame, chosen: pd.DataFrame, caption_text: str):
    """Accuracy and distinct-4 against temperature per (run, stage); chosen temperatures marked.

    One run: every stage's probe on one plot, one colour per stage (as the paper draws it).
    Several runs: one colour per run, one line style per stage.
    table: run, stage, temperature, accuracy, distinct4. chosen: run, stage, temperature.
    """
    fig, (ax_acc, ax_div) = _panels(2, width_each=5.4, height=3.6)
    colors = _colors(table["run"])
    multi = table["run"].nunique() > 1
    styles = ("-", "--", ":", "-.")

    def color(run, stage):
        return colors.get(run, "0.3") if multi else stage_color(stage)

    for (run, stage), g in table.groupby(["run", "stage"], sort=False):
        g = g.sort_values("temperature")
        kw = dict(color=color(run, stage), marker="o", ms=4, lw=1.6)
        kw["ls"] = styles[(int(stage) - 1) % 4] if multi else "-"
        label = f"{literal(run)} stage {stage}" if multi else f"stage {stage}"
        ax_acc.plot(g["temperature"], g["accuracy"], label=label, **kw)
        ax_div.plot(g["temperature"], g["distinct4"], label=label, **kw)
    for c in chosen.itertuples():
        for ax in (ax_acc, ax_div):
            ax.axvline(c.temperature, color=color(c.run, c.stage), lw=1.0, ls=":", alpha=0.9)
    for ax in (ax_acc, ax_div):
        ax.set_xlabel("sampling temperature (dotted: chosen per stage)")
        rate_axis(ax)
    ax_acc.set_ylabel("accuracy (avg@n)")
    ax_div.set_ylabel("distinct-4")
    ax_acc.set_title("accuracy against temperature", fontsize=10)
    ax_div.set_title("diversity against temperature", fontsize=10)
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig


def eval_overlay(summary: pd.DataFrame, caption_text: str, paper: pd.DataFrame | None = None):
    """avg@k with its 95% interval per checkpoint, one panel per benchmark, one line per run.

    summary: run, checkpoint, benchmark, avg, ci_lo, ci_hi (fractions). paper: benchmark,
    paper_model, paper (percent), drawn as dashed references.
    """
    benches = list(dict.fromkeys(summary["benchmark"]))
    fig, axes = _panels(len(benches), width_each=3.8)
    colors = _colors(summary["run"])
    for ax, bench in zip(axes, benches, strict=True):
        g = summary[summary["benchmark"] == bench]
        order = list(dict.fromkeys(g["checkpoint"]))
        for j, (run, r) in enumerate(g.groupby("run", sort=False)):
            x = [order.index(c) + 0.08 * j for c in r["checkpoint"]]
            y = 100 * r["avg"]
            err = [100 * (r["avg"] - r["ci_lo"]), 100 * (r["ci_hi"] - r["avg"])]
            ax.errorbar(
                x, y, yerr=err, color=colors[run], marker="o", capsize=3, label=literal(run)
            )
        if paper is not None:
            for p in paper[paper["benchmark"] == bench].drop_duplicates("paper_model").itertuples():
                ax.axhline(p.paper, **PAPER_STYLE)
                ax.text(0, p.paper, f" paper {p.paper_model}", fontsize=6, va="bottom")
        ax.set_xticks(range(len(order)), order, fontsize=8)
        ax.set_title(bench, fontsize=10)
        ax.set_xlabel("checkpoint")
        ax.set_ylabel("avg@k (%) with 95% interval")
        ax.set_ylim(0, 100)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig


def pass_at_k_overlay(curve: pd.DataFrame, caption_text: str):
    """Unbiased pass@k against k, one panel per benchmark, one line per (run, checkpoint).

    curve: run, checkpoint, benchmark, k, pass_at_k.
    """
    benches = list(dict.fromkeys(curve["benchmark"]))
    fig, axes = _panels(len(benches), width_each=3.6, height=3.2)
    colors = _colors(curve["run"])
    multi = curve["run"].nunique() > 1
    for ax, bench in zip(axes, benches, strict=True):
        g = curve[curve["benchmark"] == bench]
        cks = list(dict.fromkeys(g["checkpoint"]))
        for (run, ck), r in g.groupby(["run", "checkpoint"], sort=False):
            alpha = 0.35 + 0.65 * (cks.index(ck) + 1) / len(cks)
            label = f"{literal(run)}: {ck}" if multi else ck
            ax.plot(
                r["k"],
                100 * r["pass_at_k"],
                marker="o",
                ms=3,
                alpha=alpha if multi else 1.0,
                color=colors[run] if multi else stage_color(ck),
                label=label,
            )
        ax.set_xscale("log", base=2)
        ks = sorted({int(k) for k in g["k"]})
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_ylim(0, 100)
        ax.set_title(bench, fontsize=10)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("pass@k (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig


def yarn_overlay(avg: pd.DataFrame, caption_text: str, trained_length: int | None = None):
    """avg@k against the response budget, with and without YaRN, one line per (run, variant).

    avg: run, variant, max_length, avg, ci_lo, ci_hi (fractions).
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    colors = _colors(avg["run"])
    styles = {"yarn": "-", "none": "--"}
    multi = avg["run"].nunique() > 1
    for (run, variant), g in avg.groupby(["run", "variant"], sort=False):
        g = g.sort_values("max_length")
        ax.errorbar(
            g["max_length"],
            100 * g["avg"],
            yerr=[100 * (g["avg"] - g["ci_lo"]), 100 * (g["ci_hi"] - g["avg"])],
            color=colors[run] if multi else PALETTE.get(variant, "0.3"),
            ls=styles.get(variant, ":"),
            marker="o",
            capsize=3,
            label=f"{literal(run)}: {variant}",
        )
    if trained_length:
        ax.axvline(trained_length, **PAPER_STYLE, label="trained length")
    ax.set_xlabel("response budget (tokens)")
    ax.set_ylabel("avg@k (%) with 95% interval")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    caption(fig, caption_text)
    return fig
