"""Issue 16 item 12: the run log is not flooded by the probe's rule or Hugging Face's bars."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

from polaris_lib import probe
from polaris_lib.pipeline import notebook

REPO = Path(__file__).resolve().parents[2]


def test_probe_notebook_prints_one_short_rule_line_per_stage():
    assert len(probe.RULE) > 500  # the full rule stays in probe.RULE and metrics.json
    for stage in (1, 2, 3):
        line = probe.rule_for(stage)
        assert len(line) < 200 and "\n" not in line and f"stage {stage}" in line
    nb = json.loads((REPO / "notebooks" / "01_temperature_probe.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "print(probe.RULE)" not in code and "probe.rule_for(STAGE)" in code


def test_batch_kernels_run_without_hugging_face_bars(monkeypatch, tmp_path):
    seen = {}

    def fake_execute(*args, **kwargs):
        seen.update({k: os.environ.get(k) for k in notebook.QUIET_ENV})

    monkeypatch.setitem(
        sys.modules, "papermill", types.SimpleNamespace(execute_notebook=fake_execute)
    )
    for key in notebook.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # a user's own setting wins
    notebook.execute_notebook(
        tmp_path / "a.ipynb", tmp_path / "b.ipynb", {}, kernel_name="python3", cwd=tmp_path
    )
    assert seen["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert seen["TRANSFORMERS_VERBOSITY"] == "info"
