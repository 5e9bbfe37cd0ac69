"""The `polaris` command line: argument parsing, plan/export wiring, errors a user can act on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from synthetic import write_notebooks

from polaris_lib import cli
from polaris_lib.pipeline.jupyter_kernel import ensure_kernel, kernel_python


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


def _fake_exporter(monkeypatch, calls: list) -> None:
    """A stand-in for the CLI's export_verl that records its arguments and writes export.json."""

    def export_verl(preset, out, **kw):
        calls.append((preset, out, kw))
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "preset": preset or "tiny",
            "verl_version": "0.9.1",
            "stage1_rows": 3,
            "stage1_source": "pool",
        }
        (out / "export.json").write_text(json.dumps(info))
        return {"manifest": out / "export.json", "script": out / "run_verl.sh"}

    monkeypatch.setattr(cli, "export_verl", export_verl)


def test_export_calls_the_exporter(monkeypatch, tmp_path, capsys):
    calls = []
    _fake_exporter(monkeypatch, calls)
    out = tmp_path / "x"
    assert cli.main(["export", "verl", "--preset", "qwen3-4b-paper", "--out", str(out)]) == 0
    kw = {"run_dir": None, "data_dir": None, "overrides": None}
    assert calls == [("qwen3-4b-paper", out, kw)]
    assert f"launch: bash {out / 'run_verl.sh'}" in capsys.readouterr().out


def test_export_flags_reach_the_exporter(monkeypatch, tmp_path, capsys):
    """--run-dir, --data-dir, -p (parsed as `polaris run` parses them) and the default --out."""
    calls = []
    _fake_exporter(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    argv = [
        "export",
        "verl",
        "--run-dir",
        "reports/q4b",
        "--data-dir",
        "/d",
        "-p",
        "stages.0.learning_rate",
        "2e-6",
        "-p",
        "stages.*.group_size",
        "4",
    ]
    assert cli.main(argv) == 0
    ((preset, out, kw),) = calls
    assert preset is None and out == Path("exports/q4b")  # named after the run folder
    ov = {"stages.0.learning_rate": 2e-6, "stages.*.group_size": 4}
    assert kw == {"run_dir": "reports/q4b", "data_dir": "/d", "overrides": ov}
    assert cli.main(["export", "verl"]) == 2
    assert "give --preset NAME or --run-dir RUN" in capsys.readouterr().err


def test_export_p_values_reach_the_launch_script(tmp_path, data_dir, capsys):
    out = tmp_path / "e"
    argv = [
        "export",
        "verl",
        "--preset",
        "qwen3-4b-paper",
        "--data-dir",
        str(data_dir),
        "-p",
        "curation.pool",
        "math500",
        "-p",
        "stages.0.learning_rate",
        "2e-6",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "stage 1: 500 problems, pool 'math500' from file:" in printed and "UNCURATED" in printed
    script = (out / "run_verl.sh").read_text()
    blocks = script.split("# ---- stage ")[1:]
    lr = "actor_rollout_ref.actor.optim.lr="
    assert [b.split(lr)[1].split()[0] for b in blocks if lr in b] == ["2e-06", "1e-06", "1e-06"]
    stored = json.loads((out / "export.json").read_text())["overrides"]
    assert stored == {"curation.pool": "math500", "stages.0.learning_rate": 2e-6}


def test_export_from_a_run_folder(tmp_path, monkeypatch, capsys):
    """A finished run: its preset, seed and stored overrides, its curated set, its probes."""
    from polaris_lib import artifacts
    from polaris_lib.artifacts.manifest import Manifest
    from polaris_lib.config.presets import get_preset
    from polaris_lib.scale_out.verl_export import stage1_data

    run = tmp_path / "reports" / "t1"
    Manifest.create(
        run, run_id="t1", preset="tiny", seed=3, overrides={"stages.*.group_size": 4}
    ).save()
    curated = stage1_data(get_preset("tiny"), None, None)[0].head(20)
    curated.attrs = {}
    artifacts.write_parquet(artifacts.step_dir(run, artifacts.CURATE) / "curated.parquet", curated)
    for k in (1, 2, 3):
        probe = artifacts.step_dir(run, artifacts.PROBE, k)
        artifacts.update_metrics(probe, {"probe/chosen_temperature": 1.0 + k / 10})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", "verl", "--run-dir", str(run), "-p", "stages.0.max_steps", "7"]) == 0
    assert "20 problems, curated by the kit" in capsys.readouterr().out
    stages = json.loads((tmp_path / "exports" / "t1" / "verl_overrides.json").read_text())
    r = "actor_rollout_ref.rollout"
    assert [stages[k][f"{r}.temperature"] for k in "123"] == [1.1, 1.2, 1.3]
    assert {stages[k][f"{r}.n"] for k in "123"} == {4}  # the run's stored override
    assert stages["1"]["trainer.total_training_steps"] == 7  # -p on top of it
    assert stages["1"]["data.seed"] == 3 + get_preset("tiny").stages[0].seed  # the run's seed
    assert cli.main(["export", "verl", "--run-dir", str(run), "--preset", "qwen3-4b-paper"]) == 2
    assert "made with preset 'tiny'" in capsys.readouterr().err


def test_export_offline_without_data_is_one_line_exit_2(tmp_path):
    """Offline, empty data folder: the paper pool (hub-only) cannot load; no traceback."""
    empty = tmp_path / "data"
    empty.mkdir()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    cmd = [
        sys.executable,
        "-m",
        "polaris_lib.cli",
        "export",
        "verl",
        "--data-dir",
        str(empty),
        "--out",
        str(tmp_path / "o"),
    ]
    res = subprocess.run(
        [*cmd, "--preset", "qwen3-4b-paper"], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("polaris export: ")
    assert "stage-1 pool 'polaris53k' is missing" in res.stderr
    for way in ("unset HF_HUB_OFFLINE", "--run-dir RUN", "-p curation.pool NAME"):
        assert way in res.stderr
    res = subprocess.run(
        [*cmd, "--preset", "qwen3-4b-paper", "-p", "curation.pool", "math500"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{empty} has no pools/math500.jsonl" in res.stderr
    assert "--data-dir DIR (or POLARIS_DATA_DIR) holding pools/math500.jsonl" in res.stderr
    assert not (tmp_path / "o" / "run_verl.sh").exists()


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


# --- issue 13 items 8 and 13: one line on stderr, exit code 2, nothing written ---------------
def _one_error_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(prefix) and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-p", "stages.0.learning_rate", "1e-4x"], "learning_rate must be a finite number"),
        (["-p", "stages.*.max_steps", "2.5"], "max_steps must be a whole number"),
        (["-p", "seed", "NaN"], "seed must be a whole number"),
        (["-p", "probe.n_problems", "1e999"], "n_problems must be a whole number"),
        (["-p", "stages", "3"], "stages is a list of stage sections"),
        (["-p", "eval.benchmarks", '["aime24", "nope"]'], "unknown dataset 'nope'"),
        (["--run-id", "../x"], "is not a name"),
    ],
)
def test_run_with_a_bad_value_is_one_line_and_writes_nothing(capsys, tmp_path, argv, message):
    reports = tmp_path / "reports"
    rc = cli.main(
        ["run", "--preset", "tiny", "--reports-dir", str(reports), "--notebooks-dir", "nbs", *argv]
    )
    assert rc == 2 and message in _one_error_line(capsys, "polaris run: ")
    assert not reports.exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-p", "stages", "3"], "stages is a list of stage sections"),
        (["-p", "stages.0.max_completion_length", "-5"], "max_completion_length must be >= 1"),
    ],
)
def test_plan_with_a_bad_value_is_one_line(capsys, argv, message):
    rc = cli.main(["plan", "--preset", "qwen3-1.7b-24gb", *argv])
    assert rc == 2 and message in _one_error_line(capsys, "polaris plan: ")


@pytest.mark.parametrize("gib", ["0", "nan", "inf", "-5", "x"])
def test_plan_gpu_memory_must_be_a_positive_number(capsys, gib):
    with pytest.raises(SystemExit) as exc:
        cli.main(["plan", "--preset", "qwen3-1.7b-24gb", "--gpu-memory", gib])
    assert exc.value.code == 2
    assert "give a positive number of GiB" in capsys.readouterr().err


def test_export_with_an_unknown_benchmark_is_one_line(capsys, tmp_path):
    out = tmp_path / "out"
    argv = ["export", "verl", "--preset", "tiny", "--out", str(out)]
    argv += ["-p", "stages.*.temperature", "1.0", "-p", "eval.benchmarks", '["aime2O"]']
    rc = cli.main(argv)
    assert rc == 2 and "unknown dataset 'aime2O'" in _one_error_line(capsys, "polaris export: ")
    assert not out.exists()


def test_second_runner_on_the_same_id_is_one_line(capsys, tmp_path):
    run = tmp_path / "reports" / "busy"
    run.mkdir(parents=True)
    hold = "import sys, time; from pathlib import Path; from polaris_lib.pipeline.lock import RunLock\n"
    hold += "with RunLock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(run)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])},
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        rc = cli.main(
            ["run", "--run-id", "busy", "--reports-dir", str(tmp_path / "reports"), "--steps", "01"]
        )
    finally:
        proc.kill()
        proc.wait()
    assert rc == 2 and "is in use by process" in _one_error_line(capsys, "polaris run: ")


def test_full_disk_is_one_line(capsys, tmp_path, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("polaris_lib.artifacts.files.os.replace", full)
    rc = cli.main(["run", "--run-id", "full", "--reports-dir", str(tmp_path), "--steps", "01"])
    err = _one_error_line(capsys, "polaris run: ")
    assert rc == 2 and "No space left on device" in err and "free disk space" in err


# --- issue 16 item 6: -p merges, refusals change nothing, re-running finished work is confirmed


def _finished_run(reports: Path, run_id: str = "q", overrides: dict | None = None) -> Path:
    """A run folder whose every step is done and up to date (no notebook needs to execute)."""
    from polaris_lib.artifacts.manifest import Manifest
    from polaris_lib.config import resolve
    from polaris_lib.pipeline import plan_steps
    from polaris_lib.pipeline.steps import fingerprints, step_config

    overrides = overrides or {}
    run_dir = reports / run_id
    cfg = resolve("tiny", overrides, SEED=0).to_dict()
    plan = plan_steps(len(cfg["stages"]))
    man = Manifest.create(run_dir, run_id=run_id, preset="tiny", seed=0, overrides=overrides)
    man.set_steps([{"step": s.name, "notebook": f"{s.notebook}.ipynb"} for s in plan])
    for step, fp in zip(plan, fingerprints(cfg, plan), strict=True):
        man.step(step.name).update(status="done", fingerprint=fp, config=step_config(cfg, step))
        (run_dir / step.name).mkdir(parents=True)
        (run_dir / step.name / "_done.json").write_text('{"artifacts": {}}')
    man.save()
    return run_dir


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_p_accepts_name_equals_value():
    a = cli.build_parser().parse_args(
        ["run", "-p", "probe.n_samples=4", "-p", "stages.*.max_steps", "2", "-p", "a=1", "b=x"]
    )
    assert cli._overrides(a.param) == {
        "probe.n_samples": 4,
        "stages.*.max_steps": 2,
        "a": 1,
        "b": "x",
    }
    a = cli.build_parser().parse_args(["run", "-p", "probe.n_samples"])
    with pytest.raises(cli.ConfigError, match="NAME=VALUE"):
        cli._overrides(a.param)


def test_refused_run_changes_no_file(tmp_path, capsys):
    run = _finished_run(tmp_path, overrides={"probe.n_samples": 4})
    before = _files(run)
    base = ["run", "--run-id", "q", "--reports-dir", str(tmp_path)]
    # the case: 05 must run again, but only 06 is selected
    assert cli.main([*base, "-p", "eval.n_bootstrap", "500", "--steps", "06"]) == 2
    assert "05_eval_aime must run first" in capsys.readouterr().err
    assert _files(run) == before
    # not on a terminal and no --yes: the finished steps it would re-run are listed, nothing moves
    assert cli.main([*base, "-p", "eval.n_bootstrap=500"]) == 2
    err = capsys.readouterr().err
    assert "05_eval_aime, 06_report" in err and "--yes" in err
    assert _files(run) == before and not (run / "superseded").exists()


def test_p_merges_into_stored_overrides_and_reset_clears_them(tmp_path, capsys):
    run = _finished_run(tmp_path, overrides={"probe.n_samples": 4})
    base = ["run", "--run-id", "q", "--reports-dir", str(tmp_path), "--notebooks-dir"]
    base.append(str(tmp_path / "no-notebooks"))  # the first re-run step then fails: no kernel
    assert cli.main([*base, "-p", "eval.n_bootstrap", "500", "--yes"]) == 1
    man = json.loads((run / "manifest.json").read_text())
    assert man["overrides"] == {"probe.n_samples": 4, "eval.n_bootstrap": 500}
    assert (run / "04_length_extrapolation" / "_done.json").exists()  # unchanged steps stay
    (aside,) = (run / "superseded").iterdir()
    assert sorted(p.name for p in aside.iterdir()) == ["05_eval_aime", "06_report"]
    assert cli.main([*base, "--reset-overrides", "-p", "eval.n_bootstrap", "500", "--yes"]) == 1
    man = json.loads((run / "manifest.json").read_text())
    assert man["overrides"] == {"eval.n_bootstrap": 500}


# --- issue 16 item 8: plan exits non-zero when it does not fit and prints one combined fix


@pytest.mark.parametrize(
    "preset, gib", [("qwen3-4b-24gb", 16), ("qwen3-4b-paper", 24), ("qwen3-1.7b-paper", 80)]
)
def test_plan_that_does_not_fit_exits_1_with_one_fix_that_fits(capsys, preset, gib):
    import shlex

    rc = cli.main(["plan", "--preset", preset, "--gpu-memory", str(gib)])
    out = capsys.readouterr().out
    assert rc == 1 and "does NOT fit" in out
    assert not re.search(r"(?<![\d.])(\d+) -> \1(?![\d.])", out), out  # no no-op suggestion
    check = next(ln for ln in out.splitlines() if ln.startswith("check: polaris plan"))
    argv = shlex.split(check.removeprefix("check: polaris "))
    assert cli.main(argv) == 0, capsys.readouterr().out  # the printed command fits
    assert "does NOT fit" not in capsys.readouterr().out


def test_plan_that_fits_exits_0(capsys):
    assert cli.main(["plan", "--preset", "qwen3-4b-24gb", "--gpu-memory", "24"]) == 0
    assert "to make every stage fit" not in capsys.readouterr().out


# --- issue 16 item 9: --version, presets, config show, examples in every --help


def test_version_presets_and_config_show(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("polaris-kit ")
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in cli.PRESETS:
        assert f"\n{name}\n" in f"\n{out}"
    assert "CPU" in out and "4 x 8 H800" in out and "GPU-hours" in out
    assert cli.main(["config", "show", "--preset", "tiny", "-p", "probe.n_samples=3"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["preset"] == "tiny" and cfg["probe"]["n_samples"] == 3


@pytest.mark.parametrize("argv", [[], *[[c] for c in cli.EXAMPLES if c]])
def test_every_help_has_examples(capsys, argv):
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  polaris " in out


def test_a_run_ends_with_one_line_naming_the_report_and_its_verdict(tmp_path, capsys):
    run = _finished_run(tmp_path)
    (run / "report.html").write_text("<html></html>")
    assert cli.main(["run", "--run-id", "q", "--reports-dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    from polaris_lib.report import Run, verdict

    assert last == f"[polaris] done: {run / 'report.html'} · {verdict(Run.load(run))}"


def test_plan_eval_from_an_assumed_accuracy(capsys):
    """All 30 problems at 80%: 205 samples each for ±1 point; the GPU throughput is an assumption
    and says so (a --tokens-per-s figure replaces it)."""
    argv = ["plan-eval", "--half-width", "1", "--accuracy", "80", "--problems", "30"]
    assert cli.main([*argv, "--preset", "qwen3-4b-24gb"]) == 0
    out = capsys.readouterr().out
    assert "samples per problem: 205" in out and "6,150 responses" in out
    assert "GPU time" in out and "ASSUMPTION" in out
    assert cli.main([*argv, "--preset", "qwen3-4b-24gb", "--tokens-per-s", "4000"]) == 0
    out = capsys.readouterr().out
    assert "4,000 tokens/s (given (--tokens-per-s))" in out and "ASSUMPTION" not in out
    assert cli.main(["plan-eval", "--half-width", "1"]) == 2
    assert "--run RUN_ID (a pilot) or --accuracy" in capsys.readouterr().err
    assert (
        cli.main(["plan-eval", "--half-width", "150", "--accuracy", "80", "--problems", "30"]) == 2
    )
    assert "percentage points" in capsys.readouterr().err


def test_plan_eval_from_a_pilot_run(tmp_path, capsys):
    """A finished run's evaluation is the pilot: its pass rates, its lengths, the over-problems
    floor that samples cannot remove."""
    from synthetic import make_run_folder

    from polaris_lib import metrics

    run = make_run_folder(tmp_path / "demo")
    argv = ["plan-eval", "--half-width", "5", "--run", "demo", "--reports-dir", str(tmp_path)]
    assert cli.main([*argv, "--benchmark", "toy"]) == 0
    out = capsys.readouterr().out
    resp = pd.read_parquet(run / "05_eval_aime" / "responses.parquet")
    pilot = resp[(resp.checkpoint == "stage3") & (resp.benchmark == "toy")]
    plan = metrics.plan_samples(0.05, pass_rates=metrics.per_problem(pilot))
    assert f"samples per problem: {plan['samples_per_problem']} " in out and "stage3/toy" in out
    # this pilot's 10 problems vary no more than sampling noise: the floor is not sized as ±0.0
    assert plan["problems_floor"] == 0 and "±0.0" not in out
    assert "CPU time" in out and "cannot size the over-problems half-width" in out
    assert cli.main([*argv, "--benchmark", "nope"]) == 2
    assert "benchmarks" in capsys.readouterr().err
