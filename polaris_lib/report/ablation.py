"""What each POLARIS component does on the toy: the shipped ablation results (benchmarks/ablation.py).

The ablation is a benchmark, not a step of a run: its result files live in the kit's repository
(benchmarks/results/ablation_<regime>[_<optimizer>].json) and every run's report shows them, so a
reader sees next to their own run when each trick paid on the toy and when it did not.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from polaris_lib import artifacts
from polaris_lib.config import PROJECT_ROOT
from polaris_lib.figure_style import PALETTE, caption
from polaris_lib.report import html

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
ORDER = ["tiny", "tiny-hard", "tiny-hard_sgd", "tiny_sgd"]


def load_ablations(folder: str | Path = RESULTS_DIR) -> dict[str, dict]:
    """{name: summary} of every ablation summary in `folder` (name: regime[_optimizer])."""
    out = {}
    for path in sorted(Path(folder).glob("ablation_*.json")):
        data = json.loads(path.read_text())
        if "summary" in data and "regime" in data:
            out[path.stem.removeprefix("ablation_")] = data
    return dict(sorted(out.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99))


def label(name: str) -> str:
    """A result file's regime name as shown: `tiny-hard_sgd` -> `tiny-hard, SGD`."""
    return name.replace("_sgd", ", SGD")


def ablation_figure(ablations: dict[str, dict]):
    """One panel per regime: each arm's held-out accuracy minus the full recipe's, paired by seed
    (dots: seeds; bar: mean with its 95% t-interval over seeds). Right of 0: the arm did better."""
    names = [
        n for n, a in ablations.items() if any(v.get("vs_full") for v in a["summary"].values())
    ]
    if not names:
        return None
    arms = list(
        dict.fromkeys(
            arm for n in names for arm, v in _in_order(ablations[n]) if v.get("vs_full") is not None
        )
    )
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.6 * len(names) + 1.6, 0.42 * len(arms) + 1.6), squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        summary = ablations[name]["summary"]
        for y, arm in enumerate(arms):
            v = (summary.get(arm) or {}).get("vs_full")
            if v is None:
                continue
            color = PALETTE["stage1"] if arm != "plain" else PALETTE["base"]
            xs = [100 * d for d in v["diffs"]]
            ax.scatter(xs, [y] * len(xs), s=14, color=color, alpha=0.45, zorder=2)
            if v["lo"] is not None:
                ax.plot([100 * v["lo"], 100 * v["hi"]], [y, y], color=color, lw=2, zorder=3)
            ax.scatter([100 * v["mean"]], [y], s=46, color=color, marker="D", zorder=4)
        ax.axvline(0, color="0.3", lw=1)
        ax.set_yticks(range(len(arms)))
        ax.set_yticklabels(arms if ax is axes[0][0] else [""] * len(arms))
        ax.set_ylim(len(arms) - 0.5, -0.5)  # top to bottom, half a row of margin at both ends
        n_seeds = max(v["seeds"] for v in summary.values())
        ax.set_title(f"{label(name)} ({n_seeds} seed{'' if n_seeds == 1 else 's'})")
        ax.set_xlabel("held-out accuracy, arm − full (points)")
        ax.grid(axis="x", alpha=0.3)
    caption(
        fig,
        "benchmarks/ablation.py · toy held-out avg@k, paired by seed · "
        "dots: seeds, diamond: mean, bar: 95% t-interval over seeds",
    )
    fig.tight_layout()
    return fig


def arms_table(ablation: dict) -> pd.DataFrame:
    """One row per arm: what it changes, held-out accuracy, paired differences to full and plain."""

    def diff(v) -> str:
        if not v:
            return ""
        ci = "" if v["lo"] is None else f" [{100 * v['lo']:+.1f}, {100 * v['hi']:+.1f}]"
        return f"{100 * v['mean']:+.1f}{ci} ({v['positive']}/{len(v['diffs'])} seeds > 0)"

    rows = [
        {
            "arm": arm,
            "what it changes": v["what"],
            "seeds": v["seeds"],
            "held-out acc": f"{100 * v['heldout_acc']:.1f}",
            "arm − full (pts)": diff(v.get("vs_full")),
            "arm − plain (pts)": diff(v.get("vs_plain")),
        }
        for arm, v in _in_order(ablation)
    ]
    return pd.DataFrame(rows)


def _in_order(ablation: dict) -> list[tuple[str, dict]]:
    """(arm, summary) in the harness's order (`arm_order`), else the file's."""
    summary = ablation["summary"]
    return [(a, summary[a]) for a in ablation.get("arm_order") or summary if a in summary]


def regime_table(ablation: dict) -> pd.DataFrame:
    """The `full` arm's per-stage group mix, skip, rescue and truncation rates (mean over seeds)."""
    cols = {
        "stage": "stage",
        "frac_all0_first_step": "all-0 groups, first step",
        "frac_all0": "all-0 groups",
        "frac_all1": "all-1 groups",
        "frac_mixed": "mixed groups",
        "skip_rate": "steps skipped",
        "rescue_rate": "groups rescued",
        "truncation": "responses truncated",
        "easy_dropped": "easy-dropped after",
    }
    df = pd.DataFrame(ablation.get("regime_table") or [])
    return df[[c for c in cols if c in df]].rename(columns=cols) if len(df) else df


def ablation_section(save_dir: Path | None, folder: str | Path = RESULTS_DIR) -> str:
    """The report's section: the figure, then per regime its table of arms and its group mix."""
    ablations = load_ablations(folder)
    if not ablations:
        # a note, not a "not run" marker: the ablation is the kit's benchmark, not a step of the run
        return html.note(f"no ablation results in {folder} (benchmarks/ablation.py writes them)")
    parts = []
    fig = ablation_figure(ablations)
    if fig is not None:
        png = html.png_of(fig)
        plt.close(fig)
        if save_dir is not None:
            artifacts.write_bytes(save_dir / "fig_ablation.png", png)
        parts.append(
            html.figure(png, "ablation", "each component switched off, against the full recipe")
        )
    for name, a in ablations.items():
        prep = a.get("prepared", {})
        parts.append(
            html.details(
                f"{label(name)}: arms and regime",
                html.note(
                    f"warm start {100 * prep.get('warm_acc', float('nan')):.1f}% on "
                    f"{a.get('heldout_problems')} held-out problems x {a.get('samples_per_problem')}; "
                    f"probe's temperature {prep.get('temperature')}; optimizer {a.get('optimizer')}"
                )
                + html.table(arms_table(a))
                + html.table(regime_table(a), "{:.2f}"),
            )
        )
    return "".join(parts)
