"""The `polaris` command line: argument parsing, plan/export wiring, errors a user can act on."""

from __future__ import annotations

import sys
import types

import pandas as pd
import pytest
from synthetic import write_notebooks

from polaris_lib import cli
from polaris_lib.kernel import ensure_kernel, kernel_python


def test_run_arguments_parse():
    a = cli.build_parser().parse_args(
        [
            "run",
            "--preset",
            "tiny",
            "--run-id",
            "r1",
            "--seed",
            "3",
            "-p",
            "probe.n_samples",
            "4",
            "-p",
            "stages.*.max_steps",
            "2",
            "--steps",
            "01,02",
        ]
    )
    assert (a.preset, a.run_id, a.seed, a.steps) == ("tiny", "r1", 3, "01,02")
    assert cli._overrides(a.param) == {"probe.n_samples": 4, "stages.*.max_steps": 2}
    assert cli._overrides(None) is None  # no -p: a resumed run keeps its stored overrides


def test_unknown_preset_is_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--preset", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_bad_override_is_a_clear_error(capsys, tmp_path):
    rc = cli.main(
        ["run", "--preset", "tiny", "--reports-dir", str(tmp_path), "-p", "probe.nope", "1"]
    )
    assert rc == 2 and "no field 'nope'" in capsys.readouterr().err


def test_plan_prints_a_row_and_verdict_per_stage(capsys):
    rc = cli.main(["plan", "--preset", "qwen3-1.7b-24gb", "--gpu-memory", "24"])
    out = capsys.readouterr().out
    assert rc == 0 and "24 GiB" in out
    for k in (1, 2, 3):
        assert f"stage {k}: " in out


def test_format_plan_lists_suggestions():
    table = pd.DataFrame(
        [
            {"stage": 1, "total_gb": 20.04, "fits": True, "suggestions": []},
            {"stage": 2, "total_gb": 30.0, "fits": False, "suggestions": ["group_size 8 -> 4"]},
        ]
    )
    text = cli.format_plan(table)
    assert "stage 1: fits (20.0 GB)" in text and "stage 2: does NOT fit (30.0 GB)" in text
    assert "    - group_size 8 -> 4" in text


def test_plan_without_planner_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "polaris_lib.plan", None)  # import raises ImportError
    assert cli.main(["plan", "--preset", "tiny"]) == 2
    assert "memory planner" in capsys.readouterr().err


def test_export_calls_exporter_lazily(monkeypatch, tmp_path, capsys):
    calls = []
    fake = types.ModuleType("polaris_lib.export")
    fake.export_verl = lambda preset, out: calls.append((preset, out)) or out
    monkeypatch.setitem(sys.modules, "polaris_lib.export", fake)
    out = tmp_path / "x"
    assert cli.main(["export", "verl", "--preset", "qwen3-4b-paper", "--out", str(out)]) == 0
    assert calls == [("qwen3-4b-paper", out)]
    monkeypatch.setitem(sys.modules, "polaris_lib.export", None)
    assert cli.main(["export", "verl", "--preset", "qwen3-4b-paper"]) == 2
    assert "verl exporter" in capsys.readouterr().err


def test_report_needs_an_existing_run(tmp_path, capsys):
    assert cli.main(["report", "missing", "--reports-dir", str(tmp_path)]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert cli.main(["report", "--compare", "a", "--reports-dir", str(tmp_path)]) == 2


def test_kernel_is_this_python():
    assert ensure_kernel("python3") == sys.executable
    assert kernel_python("python3") == sys.executable
    assert kernel_python("no-such-kernel-xyz") is None


@pytest.mark.slow
def test_cli_run_failure_exit_code_and_message(tmp_path, monkeypatch, capsys):
    nbs = write_notebooks(tmp_path / "nbs")
    monkeypatch.setenv("POLARIS_TEST_FAIL", "01_temperature_probe_stage1")
    rc = cli.main(
        [
            "run",
            "--preset",
            "tiny",
            "--run-id",
            "f",
            "--reports-dir",
            str(tmp_path),
            "--notebooks-dir",
            str(nbs),
            "--heartbeat",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "FAILED: step 01_temperature_probe_stage1 failed in cell" in err
    assert (
        "synthetic failure" in err and "notebook.ipynb" in err and "rerun the same command" in err
    )
