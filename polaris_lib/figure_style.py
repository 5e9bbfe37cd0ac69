"""One function per figure: a tidy table in, a matplotlib Figure out, no computation inside.

Each pipeline step draws its figures in its own figures.py (probe/, curate/, training/, ...);
this file holds the shared look: the caption every figure carries and the paper reference line.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

PAPER_STYLE = dict(color="0.35", linestyle="--", linewidth=1.2)
"""How a paper's published value is drawn (a dashed grey reference)."""


PALETTE = {
    # what a stage (its probe, its training steps, its checkpoint) is drawn in, in every figure
    "stage1": "#4c72b0",
    "stage2": "#dd8452",
    "stage3": "#55a868",
    "stage4": "#8c613c",
    "stage5": "#64b5cd",
    "base": "#8c8c8c",  # the warm start / base checkpoint, before any stage
    # training problems
    "pool": "#b5a37a",  # before curation
    "kept": "#8172b3",  # the training set (curated, or kept for the next stage)
    "dropped": "#c44e52",  # removed (solved n/n at curation, easy after a stage)
    # rope variants of step 04
    "none": "#4c72b0",
    "yarn": "#dd8452",
    "linear": "#55a868",
}
"""One colour per meaning, shared by every figure: a stage, the base model, a set of problems."""


def stage_color(stage) -> str:
    """Colour of stage k (1, "1", "stage1"); "base"/"warm start" get the base grey."""
    key = str(stage).lower()
    if key in ("base", "warm start", "warmstart", "0"):
        return PALETTE["base"]
    key = key if key.startswith("stage") else f"stage{key}"
    return PALETTE.get(key, "#333333")


def rate_axis(ax, axis: str = "y") -> None:
    """A rate (accuracy, fraction, reward in [0, 1]) drawn on its whole range, 0 to 1."""
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0.0, 1.0)


def step_axis(ax, axis: str = "x") -> None:
    """Integer ticks for a count axis (optimizer steps, stages): no 2.5 steps."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def new_figure(width: float = 6.4, height: float = 4.0, **kwargs):
    """A Figure and Axes with the kit's defaults."""
    fig, ax = plt.subplots(figsize=(width, height), **kwargs)
    return fig, ax


def run_caption(run, *details: str) -> str:
    """The caption text every figure carries: preset · model · seed, then the step's own details.

    `run` is a RunConfig (anything with preset, model.name_or_path and seed).
    """
    parts = [f"preset {run.preset}", f"model {run.model.name_or_path}", f"seed {run.seed}"]
    return " · ".join([*parts, *details])


def literal(text) -> str:
    """User text (a run id, a path) for a matplotlib label or title: every `$` escaped, so
    `a$b$c` is drawn as written instead of being parsed as mathtext."""
    return str(text).replace("$", r"\$")


def caption(fig, text: str) -> None:
    """Small caption under the figure: preset, model, seeds — so a PNG on its own says what it is."""
    fig.text(0.01, -0.02, literal(text), fontsize=7, color="0.3", ha="left", va="top")


def paper_reference(ax, y: float, label: str) -> None:
    """A horizontal dashed line for a published number."""
    ax.axhline(y, **PAPER_STYLE, label=label)
