"""The runner: step order, fingerprints, resume after a crash, invalidation, failure reporting.

Slow tests run the real runner (papermill, real kernels) over synthetic notebooks
(tests/synthetic.py) that take a second each, so resume logic is tested without a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic import results, write_notebooks

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import Manifest
from polaris_lib.config import ConfigError, parse_value
from polaris_lib.config.overrides import apply_overrides
from polaris_lib.config.presets import get_preset
from polaris_lib.pipeline import RunInUse, RunLock, StepFailed, plan_steps, run_pipeline
from polaris_lib.pipeline.steps import changed_keys, fingerprints, flatten, step_config

REPO = Path(__file__).resolve().parents[2]
N_STEPS = 10  # tiny: 3 probes + curate + 3 stages + 04 + 05 + 06


def _fps(overrides: dict) -> list[str]:
    cfg = apply_overrides(get_preset("tiny"), overrides).to_dict()
    return fingerprints(cfg, plan_steps(len(cfg["stages"])))


def test_plan_order_matches_notebooks_md():
    names = [s.name for s in plan_steps(3)]
    assert names == [
        "01_temperature_probe_stage1",
        "02_curate_by_difficulty",
        "03_grpo_stage_stage1",
        "01_temperature_probe_stage2",
        "03_grpo_stage_stage2",
        "01_temperature_probe_stage3",
        "03_grpo_stage_stage3",
        "04_length_extrapolation",
        "05_eval_aime",
        "06_report",
    ]
    assert [s.name for s in plan_steps(1)][:3] == [
        "01_temperature_probe_stage1",
        "02_curate_by_difficulty",
        "03_grpo_stage_stage1",
    ]


@pytest.mark.parametrize(
    "override, first_changed",
    [
        ({"probe.n_samples": 4}, 0),  # the probe feeds everything
        ({"curation.max_problems": 64}, 1),  # curate onwards
        ({"stages.1.max_steps": 3}, 4),  # stage 2 onwards, not the stage-2 re-probe before it
        ({"yarn.factor": 2.0}, 7),  # 04 onwards
        ({"eval.temperature": 0.7}, 8),  # 05 onwards
        ({"notes": "x"}, 9),  # only the report
    ],
)
def test_fingerprint_invalidates_step_and_everything_after(override, first_changed):
    base, new = _fps({}), _fps(override)
    assert base[:first_changed] == new[:first_changed]
    assert all(a != b for a, b in zip(base[first_changed:], new[first_changed:], strict=True))


def test_fingerprint_ignores_run_dir():
    assert _fps({}) == _fps({"run_dir": "reports/elsewhere"})


def test_step_config_and_changed_keys():
    cfg = get_preset("tiny").to_dict()
    stage2 = plan_steps(3)[4]
    sc = step_config(cfg, stage2)
    assert sc["stages.1.max_steps"] == 20 and "probe.n_samples" not in sc
    new = step_config(
        apply_overrides(get_preset("tiny"), {"stages.*.max_steps": 2}).to_dict(), stage2
    )
    assert changed_keys(sc, new) == ["stages.1.max_steps"]


def test_flatten_and_parse_value():
    assert flatten({"a": {"b": [1, {"c": 2}]}, "d": []}) == {"a.b.0": 1, "a.b.1.c": 2, "d": []}
    assert parse_value("4") == 4 and parse_value("1.5") == 1.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("null") is None
    assert parse_value("toy") == "toy" and parse_value('"4"') == "4"


def test_unknown_steps_and_bad_override_fail_before_running(tmp_path):
    nbs = write_notebooks(tmp_path / "nbs")
    with pytest.raises(ValueError, match="match no step"):
        run_pipeline("tiny", "x", steps="09", reports_dir=tmp_path, notebooks_dir=nbs)
    with pytest.raises(ValueError, match="no field"):
        run_pipeline(
            "tiny", "x", overrides={"probe.nope": 1}, reports_dir=tmp_path, notebooks_dir=nbs
        )
    assert not (tmp_path / "x" / "manifest.json").exists()


# --- the real runner over synthetic notebooks (papermill + kernels) ---------------------------


def _run(tmp: Path, run_id: str, **kw):
    kw.setdefault("notebooks_dir", tmp / "nbs")
    return run_pipeline("tiny", run_id, reports_dir=tmp / "reports", heartbeat_s=0, **kw)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One uninterrupted run: the reference every resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("pipe")
    write_notebooks(tmp / "nbs")
    res = _run(tmp, "ref", overrides={"probe.n_samples": 4})
    return tmp, res


@pytest.mark.slow
def test_end_to_end_manifest_and_noop_rerun(base_run):
    tmp, res = base_run
    assert res.status == "done" and len(res.executed) == N_STEPS
    run_dir = tmp / "reports" / "ref"
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["preset"] == "tiny" and man["overrides"] == {"probe.n_samples": 4}
    assert man["seeds"]["run"] == 0 and man["status"] == "done"
    assert set(man["git"]) == {"commit", "branch", "dirty"}
    assert {"torch", "transformers", "trl", "papermill", "math-verify"} <= set(man["packages"])
    assert man["device"]["kind"] in ("cpu", "cuda") and man["device"]["memory_gb"] > 0
    for s in man["steps"]:
        assert s["status"] == "done" and s["retries"] == 0 and s["elapsed_s"] > 0
        assert s["started"] <= s["ended"] and len(s["fingerprint"]) == 16
        nb = run_dir / s["step"] / "notebook.ipynb"
        assert nb.exists() and artifacts.step_done(run_dir / s["step"])
    executed = json.loads((run_dir / "01_temperature_probe_stage2" / "notebook.ipynb").read_text())
    injected = "".join(executed["cells"][2]["source"])  # papermill's injected-parameters cell
    assert "STAGE = 2" in injected and '"probe.n_samples": 4' in injected
    again = _run(tmp, "ref")  # stored preset and overrides are reused: nothing to do
    assert again.executed == [] and again.status == "done"


@pytest.mark.slow
def test_kernel_crash_then_resume_matches_uninterrupted_run(base_run, tmp_path, monkeypatch):
    tmp, _ = base_run
    flag = tmp_path / "crash_flag"
    flag.write_text("01_temperature_probe_stage2")
    monkeypatch.setenv("POLARIS_TEST_CRASH", str(flag))
    with pytest.raises(StepFailed, match="01_temperature_probe_stage2") as err:
        _run(tmp, "crash", overrides={"probe.n_samples": 4})
    assert "partially executed notebook" in str(err.value)
    man = Manifest.load(tmp / "reports" / "crash")
    assert man.step("01_temperature_probe_stage2")["status"] == "failed"
    assert man.step("03_grpo_stage_stage1")["status"] == "done"  # nothing earlier lost
    res = _run(tmp, "crash")
    assert res.executed[0] == "01_temperature_probe_stage2" and len(res.executed) == 7
    rec = Manifest.load(tmp / "reports" / "crash").step("01_temperature_probe_stage2")
    assert rec["retries"] == 1 and [a["status"] for a in rec["attempts"]] == ["failed", "done"]
    assert results(tmp / "reports" / "crash") == results(tmp / "reports" / "ref")


@pytest.mark.slow
def test_parameter_change_invalidates_step_and_after(base_run, capsys):
    tmp, _ = base_run
    shutil.copytree(tmp / "reports" / "ref", tmp / "reports" / "inval")
    lines = []
    res = _run(
        tmp, "inval", overrides={"probe.n_samples": 4, "stages.2.max_steps": 3}, log=lines.append
    )
    assert res.executed == [
        "03_grpo_stage_stage3",
        "04_length_extrapolation",
        "05_eval_aime",
        "06_report",
    ]
    assert any(
        "config changed (stages.2.max_steps)" in ln and "everything after" in ln for ln in lines
    )
    run = tmp / "reports" / "inval"
    assert (run / "03_grpo_stage_stage1" / "executions.txt").read_text().count("run") == 1
    assert (run / "06_report" / "executions.txt").read_text().count("run") == 1  # folder was wiped
    # issue 13 item 1: the invalidated steps were moved aside, not deleted, and the log says where
    (aside,) = (run / "superseded").iterdir()
    assert sorted(p.name for p in aside.iterdir()) == [
        "03_grpo_stage_stage3",
        "04_length_extrapolation",
        "05_eval_aime",
        "06_report",
    ]
    assert (aside / "06_report" / "result.json").exists()
    assert any("moved aside into" in ln and "superseded" in ln for ln in lines)
    rec = Manifest.load(run).step("03_grpo_stage_stage3")
    assert rec["retries"] == 0 and len(rec["attempts"]) == 2  # a re-run for new inputs is no retry
    assert rec["attempts"][0]["superseded"].startswith("config changed (stages.2.max_steps)")
    # a change in the probe section reruns everything, and the values move with the config
    res = _run(tmp, "inval", overrides={"probe.n_samples": 5}, steps="01,02")
    assert res.executed == ["01_temperature_probe_stage1", "02_curate_by_difficulty"]
    assert not (run / "03_grpo_stage_stage1").exists()  # stale later folders are removed
    assert Manifest.load(run).step("05_eval_aime")["status"] == "skipped"


@pytest.mark.slow
def test_failing_cell_stops_run_and_names_cell(tmp_path, monkeypatch):
    write_notebooks(tmp_path / "nbs")
    monkeypatch.setenv("POLARIS_TEST_FAIL", "02_curate_by_difficulty")
    with pytest.raises(StepFailed) as err:
        _run(tmp_path, "fail", steps="01_temperature_probe_stage1,02")
    msg = str(err.value)
    assert "ValueError: synthetic failure in 02_curate_by_difficulty" in msg
    assert "cell 4 of the executed notebook" in msg and "raise ValueError" in msg
    assert "02_curate_by_difficulty/notebook.ipynb" in msg
    run = tmp_path / "reports" / "fail"
    assert artifacts.step_done(run / "01_temperature_probe_stage1")
    assert (run / "02_curate_by_difficulty" / "notebook.ipynb").exists()


@pytest.mark.slow
def test_killed_runner_resumes(base_run, tmp_path):
    """SIGKILL the whole `polaris run` process group mid-step; the rerun finishes the job."""
    tmp, _ = base_run
    sleeping = tmp_path / "sleeping"
    env = dict(
        os.environ,
        POLARIS_TEST_SLEEP="60",
        POLARIS_TEST_SLEEP_FLAG=str(sleeping),
        POLARIS_TEST_SLEEP_STEP="02_curate_by_difficulty",
    )
    cmd = [
        sys.executable,
        "-m",
        "polaris_lib.cli",
        "run",
        "--preset",
        "tiny",
        "--run-id",
        "killed",
        "--reports-dir",
        str(tmp / "reports"),
        "--notebooks-dir",
        str(tmp / "nbs"),
        "-p",
        "probe.n_samples",
        "4",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not sleeping.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert sleeping.exists(), "the runner never reached the step to kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = tmp / "reports" / "killed"
    assert Manifest.load(run).step("02_curate_by_difficulty")["status"] == "running"
    res = _run(tmp, "killed")
    assert res.executed[0] == "02_curate_by_difficulty" and res.status == "done"
    rec = Manifest.load(run).step("02_curate_by_difficulty")
    assert rec["retries"] == 1 and rec["attempts"][0]["error"].startswith("interrupted")
    assert results(run) == results(tmp / "reports" / "ref")


HOLD = """
import sys, time
from pathlib import Path
from polaris_lib.pipeline.lock import RunLock
with RunLock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(run_dir: Path, seconds: float = 30) -> subprocess.Popen:
    """Another process holding the run lock (until killed or `seconds` pass)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_run_folder_lock_refuses_a_second_runner(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunInUse, match=f"in use by process {proc.pid}"):
            RunLock(tmp_path).__enter__()
    finally:
        proc.kill()
        proc.wait()
    # killed while holding it: the file stays, the kernel released the lock
    assert (tmp_path / ".lock").read_text() == str(proc.pid)
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_stale_lock_of_a_reused_pid_does_not_block(tmp_path):
    """Issue 13 item 7: a lock file naming a live process that does not hold the lock (its PID
    was reused after the runner died) used to block the run for good."""
    (tmp_path / ".lock").write_text(str(os.getppid()))  # alive, but not a runner
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    (tmp_path / ".lock").write_text("999999999")  # a dead one
    with RunLock(tmp_path):
        pass


def _race(run_dir: Path, barrier, results, i: int) -> None:
    barrier.wait()
    try:
        with RunLock(run_dir):
            results[i] = True
            time.sleep(0.05)
    except RunInUse:
        results[i] = False


def test_two_runners_released_together_never_both_get_the_lock(tmp_path):
    """Issue 13 item 7: the old check-then-write lock let two runners in together. Threads of
    one process and separate processes, 30 trials each."""
    import multiprocessing
    import threading

    for trial in range(30):
        run_dir = tmp_path / f"t{trial}"
        run_dir.mkdir()
        barrier, results = threading.Barrier(2), [None, None]
        threads = [
            threading.Thread(target=_race, args=(run_dir, barrier, results, i)) for i in (0, 1)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(True) == 1, f"trial {trial}: {results}"
    ctx = multiprocessing.get_context("fork")
    for trial in range(30):
        run_dir = tmp_path / f"p{trial}"
        run_dir.mkdir()
        barrier, results = ctx.Barrier(2), ctx.Array("i", [-1, -1])
        procs = [
            ctx.Process(target=_race_proc, args=(run_dir, barrier, results, i)) for i in (0, 1)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert sorted(results[:]) == [0, 1], f"trial {trial}: {results[:]}"


def _race_proc(run_dir: Path, barrier, results, i: int) -> None:
    out = [None]
    _race(run_dir, barrier, out, 0)
    results[i] = int(out[0])


# --- issue 13: nothing is touched before the config is valid; run ids are names ---------------
def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("run_id", ["../x", "/tmp/abs", "a/b", "..", ".", "a b", "x$(id)", ""])
def test_run_id_is_a_name(tmp_path, run_id):
    """Issue 13 item 2: `--run-id ../x` or an absolute path used to be accepted as a path."""
    nbs = write_notebooks(tmp_path / "nbs")
    reports = tmp_path / "reports"
    reports.mkdir()
    with pytest.raises(ConfigError, match="is not a name"):
        run_pipeline("tiny", run_id, reports_dir=reports, notebooks_dir=nbs)
    assert list(reports.iterdir()) == [] and not (tmp_path / "x").exists()


def test_a_folder_that_is_not_a_run_folder_is_never_written_or_cleaned(tmp_path):
    """Issue 13 item 2: pointed at a foreign folder, the runner deleted its checkpoints/stage1,
    06_report/ and report.html, then wrote its manifest and lock there."""
    nbs = write_notebooks(tmp_path / "nbs")
    foreign = tmp_path / "reports" / "mine"
    (foreign / "checkpoints" / "stage1").mkdir(parents=True)
    (foreign / "checkpoints" / "stage1" / "weights.bin").write_bytes(b"precious")
    (foreign / "report.html").write_text("my page")
    (foreign / "06_report").mkdir()
    before = _tree(foreign)
    for manifest in (None, "{not json", '{"some": "other tool"}'):
        if manifest is not None:
            (foreign / "manifest.json").write_text(manifest)
            before = _tree(foreign)
        with pytest.raises(ConfigError, match="not (a polaris run|readable JSON)"):
            _run(tmp_path, "mine", notebooks_dir=nbs, rerun_from="06")
        assert _tree(foreign) == before and not (foreign / ".lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ({"stages.0.learning_rate": "1e-4x"}, "learning_rate must be a finite number"),
        ({"eval.benchmarks": ["aime24", "aime2O"]}, "unknown dataset 'aime2O'"),
        ({"stages": 3}, "stages is a list of stage sections"),
    ],
)
def test_bad_override_on_a_finished_run_touches_nothing(base_run, override, message):
    """Issue 13 item 1: a mistyped override used to invalidate and delete every later step and
    checkpoint before anything checked it."""
    tmp, _ = base_run
    run = tmp / "reports" / "typo"
    if not run.exists():
        shutil.copytree(tmp / "reports" / "ref", run)
    before = _tree(run)
    with pytest.raises(ConfigError, match=re.escape(message)):
        _run(tmp, "typo", overrides={"probe.n_samples": 4, **override})
    assert _tree(run) == before
