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
from polaris_lib import artifacts as A
from polaris_lib.presets import resolve
cfg = resolve(PRESET, OVERRIDES, SEED=SEED, RUN_DIR=RUN_DIR)
out = A.step_dir(cfg.run_dir, {step!r}, STAGE if {staged} else None)
A.write_config(out, cfg)
with open(out / "executions.txt", "a") as f:
    f.write("run\\n")
prev = {prev!r}
base = A.read_json(Path(cfg.run_dir) / prev / "result.json")["value"] if prev else 0
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

FINISH = """A.write_json(out / "result.json", {"value": value})
A.finish_step(out, ["result.json"])"""


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
