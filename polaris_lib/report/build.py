"""The run report (06): reports/<run_id>/report.html rebuilt from the run folder's files alone.

No model and no GPU: every number comes from a step folder's metrics.json or tidy tables, every
figure either from a step's fig_*.png or from `report.figures` applied to those tables. A step
that has not run shows a "not run" note instead. Compare mode overlays two or more runs.
Table and file names follow docs/architecture.md ("Artifacts each step writes").
"""

from __future__ import annotations

import re
from pathlib import Path

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import now
from polaris_lib.report import html
from polaris_lib.report.runs import Run, run_status
from polaris_lib.report.sections import compare_sections, single_run_sections

INDEX = "report_index.json"
"""Written into the 06 folder: the report's sections, figures and the steps it found not run."""


def show_figure(folder: str | Path, fig_id: str):
    """A saved report figure for display in the notebook, or a 'not run' note when absent."""
    from IPython.display import Image, Markdown

    path = Path(folder) / f"fig_{fig_id}.png"
    return Image(filename=str(path)) if path.exists() else Markdown(f"*{fig_id}: not run*")


ARTIFACTS = ["config.json", INDEX, "../report.html"]
"""What a finished 06 step leaves (report.html sits in the run folder itself)."""


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write report.html for one run (into out_dir, default the run folder); returns its path."""
    run = Run.load(run_dir)
    save_dir = run.dir / artifacts.REPORT if (run.dir / artifacts.REPORT).is_dir() else None
    sections = single_run_sections(run, save_dir)
    m = run.manifest
    status = run_status(run)
    sub = html.esc(
        f"preset {m.get('preset', '?')} · seed {m.get('seed', '?')} · "
        f"status {status} · built {now()} from {run.dir}"
    )
    out = Path(out_dir or run.dir) / "report.html"
    html.write_page(out, html.page(f"POLARIS run {run.name}", sub, sections))
    if save_dir is not None:
        artifacts.write_json(
            save_dir / INDEX,
            {
                "report": str(out),
                "sections": [h for _, h, _ in sections],
                "figures": sorted(p.stem.removeprefix("fig_") for p in save_dir.glob("fig_*.png")),
                "not_run": sorted(
                    set(
                        re.findall(
                            r'class="notrun"><b>([^<]+)</b>', "".join(b for *_, b in sections)
                        )
                    )
                ),
            },
        )
    return out


def build_compare_report(run_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Write out_dir/report.html overlaying the runs' figures; returns its path."""
    runs = [Run.load(d) for d in run_dirs]
    if len(runs) < 2:
        raise ValueError("compare mode needs two or more runs")
    missing = [str(r.dir) for r in runs if not r.dir.is_dir()]
    if missing:
        raise FileNotFoundError(f"run folder(s) not found: {missing}")
    sections = compare_sections(runs)
    names = ", ".join(r.name for r in runs)
    out = Path(out_dir) / "report.html"
    return html.write_page(
        out, html.page(f"POLARIS runs compared: {names}", html.esc(names), sections)
    )
