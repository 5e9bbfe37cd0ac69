"""Synthetic notebooks and run folders for the runner and report tests (no model, seconds to run).

`write_notebooks(dir)` writes one small notebook per pipeline step with the real notebooks'
parameters cell; each resolves the config, reads the previous step's value, writes its own
artifacts and calls `finish_step`. Two environment hooks simulate failures:
- POLARIS_TEST_CRASH=<flag file>: the step named in the file kills its kernel (os._exit) once.
- POLARIS_TEST_FAIL=<step name>: the step raises in a code cell (a notebook error).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

PARAMS = """PRESET = "tiny"  # preset name
RUN_DIR = "reports/dev"  # run folder
SEED = 0  # global seed
OVERRIDES = {}  # dotted config overrides
STAGE = 1  # stage (staged notebooks)"""

BODY = """import os
import time
from pathlib import Path
from polaris_lib import artifacts
from polaris_lib.config import resolve
cfg = resolve(PRESET, OVERRIDES, SEED=SEED, RUN_DIR=RUN_DIR)
out = artifacts.step_dir(cfg.run_dir, {step!r}, STAGE if {staged} else None)
artifacts.write_config(out, cfg)
with open(out / "executions.txt", "a") as f:
    f.write("run\\n")
prev = {prev!r}
base = artifacts.read_json(Path(cfg.run_dir) / prev / "result.json")["value"] if prev else 0
flag = os.environ.get("POLARIS_TEST_CRASH")
if flag and Path(flag).exists() and Path(flag).read_text().strip() == out.name:
    Path(flag).unlink()
    os._exit(1)
if out.name == os.environ.get("POLARIS_TEST_SLEEP_STEP"):
    Path(os.environ["POLARIS_TEST_SLEEP_FLAG"]).write_text("sleeping")
    time.sleep(float(os.environ.get("POLARIS_TEST_SLEEP", "0")))
value = base * 7 + cfg.seed + cfg.probe.n_samples + len(out.name)
print(f"{{out.name}}: value {{value}}")"""

FAIL = """if os.environ.get("POLARIS_TEST_FAIL") == out.name:
    raise ValueError("synthetic failure in " + out.name)"""

FINISH = """artifacts.write_json(out / "result.json", {"value": value})
artifacts.finish_step(out, ["result.json"])"""


def _steps(n_stages: int = 3) -> list[tuple[str, str, int | None]]:
    """(folder, notebook stem, stage) in pipeline order, as pipeline.plan_steps has them."""
    from polaris_lib.pipeline import plan_steps

    return [(s.name, s.notebook, s.stage) for s in plan_steps(n_stages)]


def write_notebooks(nb_dir: Path) -> Path:
    """One synthetic notebook per pipeline notebook stem; staged ones find their predecessor."""
    nb_dir.mkdir(parents=True, exist_ok=True)
    steps = _steps()
    for stem in dict.fromkeys(s[1] for s in steps):
        staged = stem in ("01_temperature_probe", "03_grpo_stage")
        # the previous folder is computed in the notebook from the pipeline order
        prev_code = (
            "from polaris_lib.pipeline import plan_steps\n"
            "_names = [s.name for s in plan_steps(len(cfg.stages))]\n"
        )
        body = BODY.format(step=stem, staged=staged, prev=None)
        body = body.replace(
            "prev = None",
            prev_code
            + "prev = _names[_names.index(out.name) - 1] if _names.index(out.name) else None",
        )
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        params = nbformat.v4.new_code_cell(PARAMS)
        params.metadata["tags"] = ["parameters"]
        nb.cells = [
            nbformat.v4.new_markdown_cell(f"# {stem} (synthetic)"),
            params,
            nbformat.v4.new_code_cell(body),
            nbformat.v4.new_code_cell(FAIL),
            nbformat.v4.new_code_cell(FINISH),
        ]
        nbformat.write(nb, nb_dir / f"{stem}.ipynb")
    return nb_dir


def results(run_dir: Path) -> dict[str, int]:
    """Every step's synthetic value (what 'the same results' means for the synthetic pipeline)."""
    import json

    return {
        p.parent.name: json.loads(p.read_text())["value"]
        for p in sorted(Path(run_dir).glob("*/result.json"))
    }


# --- a stored run folder for the report (the files every step writes, per docs/architecture.md) --------


def _fig(path: Path, title: str) -> None:
    from polaris_lib import artifacts
    from polaris_lib.figure_style import new_figure

    fig, ax = new_figure(4, 3)
    ax.plot([0, 1, 2], [0, 1, 0])
    ax.set_title(title)
    artifacts.save_figure(fig, path)
    import matplotlib.pyplot as plt

    plt.close(fig)


def make_run_folder(run_dir: Path, seed: int = 0, n_stages: int = 3, skip: tuple = ()) -> Path:
    """A finished run's files for the `tiny` preset, with made-up but well-formed numbers.

    `skip`: step folder names to leave out (the report must show them as not run).
    """
    import numpy as np
    import pandas as pd

    from polaris_lib import artifacts
    from polaris_lib.config.presets import get_preset
    from polaris_lib.metrics import summarize
    from polaris_lib.pipeline import plan_steps

    rng = np.random.default_rng(seed)
    cfg = get_preset("tiny")
    cfg.seed, cfg.run_dir = seed, str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def step(name: str, files: dict, metrics: dict, figs: list[str]) -> None:
        if name in skip:
            return
        out = run_dir / name
        out.mkdir(parents=True, exist_ok=True)
        artifacts.write_config(out, cfg)
        for fname, df in files.items():
            artifacts.write_parquet(out / fname, df)
        artifacts.update_metrics(out, metrics)
        for f in figs:
            _fig(out / f, f"{name}: {f}")
        artifacts.finish_step(out, ["config.json", "metrics.json", *files, *figs])

    temps = [0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]
    n_pool = 64
    for k in range(1, n_stages + 1):
        acc = np.clip(0.5 + 0.1 * k - 0.25 * np.maximum(np.array(temps) - 1.0, 0), 0, 1)
        table = pd.DataFrame(
            dict(
                temperature=temps,
                accuracy=acc,
                acc_lo=acc - 0.05,
                acc_hi=acc + 0.05,
                distinct4=np.linspace(0.3, 0.9, 7) - 0.05 * k,
                truncation_rate=0.0,
                zone="robust",
            )
        )
        step(
            f"01_temperature_probe_stage{k}",
            {"per_temperature.parquet": table},
            {
                "probe/chosen_temperature": 1.0 + 0.2 * (k - 1),
                "probe/rule": "start of controlled exploration",
                "probe/overridden": False,
                "probe/distinct4_at_chosen": 0.6,
                "probe/method": "auto",
                "probe/accuracy_at_chosen": float(acc[3]),
            },
            ["fig_probe.png"],
        )
        if k == 1:
            ks = rng.integers(0, 9, n_pool)
            rates = pd.DataFrame(
                dict(problem_id=[f"toy/{i}" for i in range(n_pool)], k=ks, n=8, pass_rate=ks / 8)
            )
            curated = rates[rates.k < 8].drop(columns=["k", "n"])
            step(
                "02_curate_by_difficulty",
                {"pass_rates.parquet": rates, "curated.parquet": curated},
                {
                    "curate/pool_size": n_pool,
                    "curate/kept": len(curated),
                    "curate/dropped_solved_all": int((ks == 8).sum()),
                },
                ["fig_pass_rates.png"],
            )
        n_steps = 5
        steps = pd.DataFrame(
            {
                "step": range(1, n_steps + 1),
                "reward": np.linspace(0.3, 0.5, n_steps) + 0.05 * k + rng.normal(0, 0.01, n_steps),
                "completions/mean_length": np.linspace(40, 50, n_steps) + 8 * k,
                "completions/clipped_ratio": np.linspace(0.2, 0.1, n_steps),
                "polaris/frac_mixed": np.full(n_steps, 0.6),
            }
        )
        nxt = curated.iloc[: len(curated) - 3 * k]
        step(
            f"03_grpo_stage_stage{k}",
            {
                "steps.parquet": steps,
                "next_stage_data.parquet": nxt,
                "easy_dropped.parquet": curated.iloc[len(curated) - 3 * k :],
            },
            {
                "train/steps": n_steps,
                "train/temperature": 1.0 + 0.2 * (k - 1),
                "train/next_stage_size": len(nxt),
                "train/heldout_acc_warmstart": 0.4,
                "train/heldout_acc": 0.4 + 0.05 * k,
                "train/heldout_gain": 0.05 * k,
                "train/heldout_gain_lo": 0.05 * k - 0.03,
                "train/heldout_gain_hi": 0.05 * k + 0.03,
                "train/heldout_problems": 64,
                "train/heldout_k": 8,
                "train/heldout_temperature": 1.0,
            },
            ["fig_rewards.png"],
        )
    avg = pd.DataFrame(
        [
            dict(variant=v, max_length=L, k=4, avg=a, ci_lo=a - 0.05, ci_hi=a + 0.05)
            for v, off in (("none", 0.0), ("yarn", 0.05))
            for L, a in ((64, 0.3 + off), (96, 0.35 + off), (128, 0.36 + 2 * off))
        ]
    )
    step(
        "04_length_extrapolation",
        {"avg_vs_length.parquet": avg},
        {"yarn/applied": True, "yarn/factor": 1.5},
        ["fig_avg_vs_length.png"],
    )
    rows = [
        dict(
            checkpoint=ck,
            benchmark=b,
            problem_id=f"{b}/{p}",
            sample_idx=s,
            text="x",
            n_tokens=int(rng.integers(10, 90)),
            truncated=False,
            correct=bool(rng.random() < 0.3 + 0.1 * i),
            reason="ok",
        )
        for i, ck in enumerate(["base", "stage1", "stage2", "stage3"])
        for b, n in (("toy", 8), ("aime24", 2))
        for p in range(10)
        for s in range(n)
    ]
    resp = pd.DataFrame(rows)
    summary = summarize(resp, n_boot=200)
    step(
        "05_eval_aime",
        {"responses.parquet": resp, "summary.parquet": summary},
        {"eval/toy/avg@8": float(summary.avg.iloc[-1])},
        ["fig_avg_by_checkpoint.png"],
    )
    names = [s.name for s in plan_steps(n_stages)]
    artifacts.write_json(
        run_dir / "manifest.json",
        {
            "run_id": run_dir.name,
            "preset": "tiny",
            "seed": seed,
            "overrides": {},
            "status": "done",
            "git": {"commit": "0" * 40, "dirty": False, "branch": "main"},
            "device": {
                "kind": "cpu",
                "name": "x86_64",
                "memory_gb": 24.0,
                "cpu_count": 2,
                "ram_gb": 24.0,
            },
            "python": {"version": "3.11"},
            "packages": {"torch": "2.13.0"},
            "steps": [
                {
                    "step": n,
                    "status": "skipped" if n in skip else "done",
                    "elapsed_s": 10.0,
                    "retries": 0,
                    "peak_rss_gb": 1.0,
                    "started": "t0",
                    "ended": "t1",
                }
                for n in names
            ],
        },
    )
    return run_dir
