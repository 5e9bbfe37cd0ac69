"""One function per figure: a tidy table in, a matplotlib Figure out, no computation inside.

Each pipeline step draws its figures in its own figures.py (probe/, curate/, training/, ...);
this file holds the shared look: the caption every figure carries and the paper reference line.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

PAPER_STYLE = dict(color="0.35", linestyle="--", linewidth=1.2)
"""How a paper's published value is drawn (a dashed grey reference)."""


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
