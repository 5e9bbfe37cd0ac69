"""verl export: overrides generated from the preset, data in verl's format, the launch script as
verl receives it, verl's real config schema (when a verl install is available), the reward log
and easy-drop between stages, and the paper-scale cost table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from polaris_lib import artifacts
from polaris_lib.config import apply_overrides
from polaris_lib.config.presets import get_preset
from polaris_lib.config.sections import ConfigError
from polaris_lib.data.verl import INSTRUCTION_SUFFIX, read_verl
from polaris_lib.scale_out import cost as scale
from polaris_lib.scale_out import verl_export as export
from polaris_lib.scale_out import verl_reward

PAPER = "qwen3-4b-paper"
MATH500 = {"curation.pool": "math500"}  # a local stand-in for POLARIS-53K (hub only)
A, R = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"
PATHS = {k: f"/p/{k}" for k in export.SHELL_PATHS}


@pytest.fixture(scope="module")
def paper_export(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("verl") / PAPER
    return out, export.export_verl(PAPER, out, data_dir=data_dir, overrides=MATH500)


# ----------------------------------------------------------------------------- the mapping
def test_overrides_carry_the_paper_values_per_stage():
    run = get_preset(PAPER)
    for k, (temp, resp, steps) in enumerate(
        [(1.4, 39936, 450), (1.45, 48128, 150), (1.5, 52224, 100)], start=1
    ):
        o = export.verl_overrides(run, k, temperature=run.stage(k).temperature, paths=PATHS)
        assert o[f"{R}.temperature"] == temp and o["data.max_response_length"] == resp
        assert o["trainer.total_training_steps"] == steps
        assert o["data.max_prompt_length"] == 1024 and o[f"{R}.n"] == 8
        assert o["data.train_batch_size"] == 128 and o[f"{A}.ppo_mini_batch_size"] == 128
        assert o[f"{A}.optim.lr"] == 1e-6 and o[f"{A}.optim.lr_scheduler_type"] == "constant"
        assert (o[f"{A}.clip_ratio_low"], o[f"{A}.clip_ratio_high"]) == (0.2, 0.28)
        assert o[f"{A}.use_kl_loss"] is False and o["algorithm.use_kl_in_reward"] is False
        assert o[f"{A}.entropy_coeff"] == 0.0 and o[f"{A}.loss_agg_mode"] == "token-mean"
        assert (o[f"{R}.top_p"], o[f"{R}.top_k"]) == (1.0, -1)
        assert o["algorithm.adv_estimator"] == "grpo"
        assert (o["trainer.nnodes"], o["trainer.n_gpus_per_node"]) == (4, 8)
        start = "/p/model_path" if k == 1 else f"/p/ckpt_dir/stage{k - 1}/hf"
        assert o["actor_rollout_ref.model.path"] == start
        assert o["data.train_files"] == f"/p/data_dir/stage{k}.parquet"


def test_overrides_follow_the_preset_not_literals(tmp_path, data_dir):
    """Change the preset through overrides: the script and JSON change with it."""
    ov = {**MATH500, "stages.1.max_completion_length": 30000, "stages.*.group_size": 4}
    paths = export.export_verl(PAPER, tmp_path, data_dir=data_dir, overrides=ov)
    stages = json.loads(paths["overrides"].read_text())
    assert stages["2"]["data.max_response_length"] == 30000
    assert {s[f"{R}.n"] for s in stages.values()} == {4}
    script = paths["script"].read_text()
    assert "data.max_response_length=30000 " in script and f"{R}.n=4 " in script


def test_lora_presets_carry_rank_and_alpha():
    run = get_preset("qwen3-1.7b-24gb")
    o = export.verl_overrides(run, 1, temperature=1.0, paths=PATHS)
    rank = run.model.lora_rank
    assert rank > 0 and o["actor_rollout_ref.model.lora_rank"] == rank
    assert o["actor_rollout_ref.model.lora_alpha"] == (run.model.lora_alpha or 2 * rank)
    assert (o["trainer.nnodes"], o["trainer.n_gpus_per_node"]) == (1, 1)  # its own target
    assert o[f"{R}.tensor_model_parallel_size"] == 1


def test_unmappable_settings_fail_loudly():
    run = get_preset(PAPER)
    run.stages[0].loss_type = "sapo"  # no verl loss_agg_mode for it
    with pytest.raises(ConfigError, match="no verl equivalent"):
        export.verl_overrides(run, 1, temperature=1.0, paths=PATHS)
    run = get_preset(PAPER)
    run.stages[0].mask_truncated_completions = True
    with pytest.raises(ConfigError, match="cannot be expressed in verl"):
        export.verl_overrides(run, 1, temperature=1.0, paths=PATHS)


# ----------------------------------------------------------------------------- the files
def test_stage1_data_is_verl_rl_format(paper_export, data_dir):
    out, paths = paper_export
    raw = pq.read_table(paths["stage1"]).to_pandas()
    assert {"prompt", "reward_model", "extra_info", "data_source"} <= set(raw.columns)
    first = raw.iloc[0]
    content = first.prompt[0]["content"]
    assert first.prompt[0]["role"] == "user" and content.count(INSTRUCTION_SUFFIX) == 1
    assert raw.extra_info.map(lambda e: e["index"]).tolist() == list(range(len(raw)))
    assert all(isinstance(r["ground_truth"], str | list) for r in raw.reward_model)
    back = read_verl(raw, source=None, default_source="x")
    assert back.problem_id.is_unique and back.problem_id.str.startswith("math500/").all()
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["stage1_rows"] == 500 and "UNCURATED" in manifest["stage1_source"]
    assert manifest["val_source"] == "aime24" and manifest["val_rows"] == 30


def test_run_dir_gives_curated_data_and_probe_temperatures(tmp_path):
    run = get_preset("tiny")
    pool = export.stage1_data(run, None, None)[0].head(40)
    curated = pool.assign(pass_rate=0.5).iloc[:25]
    curated.attrs = {}  # the loader's validation report is not parquet metadata
    step = artifacts.step_dir(tmp_path / "run", artifacts.CURATE)
    artifacts.write_parquet(step / "curated.parquet", curated)
    for k, t in [(1, 1.2), (2, 1.3), (3, 1.35)]:
        probe = artifacts.step_dir(tmp_path / "run", artifacts.PROBE, k)
        artifacts.update_metrics(probe, {"probe/chosen_temperature": t})
    paths = export.export_verl("tiny", tmp_path / "out", run_dir=tmp_path / "run")
    stages = json.loads(paths["overrides"].read_text())
    assert [stages[k][f"{R}.temperature"] for k in "123"] == [1.2, 1.3, 1.35]
    back = read_verl(pq.read_table(paths["stage1"]).to_pandas(), source=None, default_source="x")
    assert back.problem_id.tolist() == curated.problem_id.tolist()
    assert "pass_rate" in back.columns  # curated extras travel in extra_info


def test_missing_inputs_say_what_to_run(tmp_path):
    with pytest.raises(ConfigError, match="01_temperature_probe"):
        export.export_verl("tiny", tmp_path / "a")  # tiny leaves temperatures to the probe
    with pytest.raises(FileNotFoundError, match="no run folder"):  # a typo is not "uncurated"
        export.export_verl(PAPER, tmp_path / "b", run_dir=tmp_path / "no-such-run")
    with pytest.raises(ConfigError, match="give a preset .* or a run folder"):
        export.export_verl(None, tmp_path / "c")


def test_run_dir_without_curation_exports_the_pool_and_says_so(tmp_path, data_dir):
    (tmp_path / "run").mkdir()
    paths = export.export_verl(
        PAPER, tmp_path / "out", run_dir=tmp_path / "run", data_dir=data_dir, overrides=MATH500
    )
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["stage1_rows"] == 500
    assert manifest["stage1_source"].endswith(
        f"UNCURATED: {tmp_path}/run/02_curate_by_difficulty/curated.parquet does not exist "
        "(run 02_curate_by_difficulty for this run)"
    )


def _stored_run(run_dir: Path, preset: str, seed: int, overrides: dict) -> Path:
    from polaris_lib.artifacts.manifest import Manifest

    Manifest.create(
        run_dir, run_id=run_dir.name, preset=preset, seed=seed, overrides=overrides
    ).save()
    return run_dir


def test_run_settings_come_from_the_run_then_the_given_overrides(tmp_path):
    run = _stored_run(tmp_path / "r", "tiny", 3, {"stages.*.group_size": 4, "probe.n_samples": 2})
    preset, ov = export.run_settings(None, run, {"stages.*.group_size": 6})
    assert preset == "tiny"
    assert ov == {"seed": 3, "stages.*.group_size": 6, "probe.n_samples": 2}  # given ones win
    assert export.run_settings("tiny", run, None)[1]["stages.*.group_size"] == 4
    with pytest.raises(ConfigError, match="made with preset 'tiny', not 'qwen3-4b-paper'"):
        export.run_settings(PAPER, run, None)
    (tmp_path / "bare").mkdir()  # a folder the notebooks wrote alone: no manifest
    assert export.run_settings(PAPER, tmp_path / "bare", {"a": 1}) == (PAPER, {"a": 1})
    with pytest.raises(ConfigError, match="no manifest.json"):
        export.run_settings(None, tmp_path / "bare", None)


def test_offline_pool_error_names_the_ways_out(tmp_path, monkeypatch):
    """An unreachable hub pool: DataUnavailableError naming the dataset, folder and flags."""
    from polaris_lib.data import DataUnavailableError, catalog_entry

    def offline(name, **kw):  # as the loader does offline: unknown names first, then the hub
        catalog_entry(name)
        raise DataUnavailableError(f"dataset {name!r}: offline")

    monkeypatch.setattr("polaris_lib.data.catalog.load_dataset", offline)
    run = get_preset(PAPER)
    with pytest.raises(DataUnavailableError) as err:
        export.stage1_data(run, None, tmp_path)
    msg = str(err.value)
    assert "stage-1 pool 'polaris53k' is missing: the catalog has no local copy" in msg
    assert "--data-dir" not in msg  # polaris53k has no local file a data folder could hold
    assert "HF_HUB_OFFLINE" in msg and "--run-dir" in msg and "-p curation.pool" in msg
    run.curation.pool = "math500"
    with pytest.raises(
        DataUnavailableError,
        match=f"{tmp_path} has no pools/math500.jsonl.*--data-dir DIR \\(or POLARIS_DATA_DIR\\)",
    ):
        export.stage1_data(run, None, tmp_path)
    run.curation.pool = "nope"
    with pytest.raises(ConfigError, match="curation.pool: unknown dataset 'nope'"):
        export.stage1_data(run, None, tmp_path)


# ----------------------------------------------------------------------------- the script
SHIM = """#!/usr/bin/env bash
# Stands in for python3: records what verl / the kit would have been called with.
printf '%s\\0' "$@" > "$SHIM_DIR/call-$(date +%s%N)"
if [[ "$1" == -c ]]; then exec "$REAL_PYTHON" "$@"; fi  # the kit's own steps run for real
"""


def _run_script(script: Path, tmp: Path, env_extra: dict | None = None, *args: str):
    """Run run_verl.sh with a fake python3; return (completed process, argv of each call)."""
    bin_dir, calls = tmp / "bin", tmp / "calls"
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls.mkdir(parents=True, exist_ok=True)
    (bin_dir / "python3").write_text(SHIM)
    (bin_dir / "python3").chmod(0o755)
    ckpt = tmp / "ckpt"
    for k in (1, 2, 3):  # what verl leaves behind: the last checkpoint's step
        (ckpt / f"stage{k}").mkdir(parents=True, exist_ok=True)
        (ckpt / f"stage{k}" / "latest_checkpointed_iteration.txt").write_text("7")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SHIM_DIR": str(calls),
        "CKPT_DIR": str(ckpt),
        "REWARD_FN": "/r/verl_reward.py",
        "MODEL_PATH": "/m/base",
        "REAL_PYTHON": sys.executable,
        **(env_extra or {}),
    }
    proc = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True)
    argvs = [p.read_text().split("\0")[:-1] for p in sorted(calls.iterdir())]
    return proc, argvs


def _verl_args(argv: list[str]) -> dict[str, str]:
    assert argv[:2] == ["-m", export.ENTRY]
    return dict(a.split("=", 1) for a in argv[2:])


@pytest.fixture(scope="module")
def script_run(paper_export, tmp_path_factory):
    """run_verl.sh executed with a fake python3 (verl calls recorded, kit calls real)."""
    out, paths = paper_export
    tmp = tmp_path_factory.mktemp("script")
    data, logs = tmp / "data", tmp / "logs"
    shutil.copytree(out / "data", data)
    ids = [
        e["problem_id"] for e in pq.read_table(data / "stage1.parquet")["extra_info"].to_pylist()
    ]
    for k, easy in [(1, ids[:3]), (2, ids[3:4])]:  # what verl_reward would log during stage k
        artifacts.append_jsonl(
            logs / f"stage{k}" / "rewards-h-1.jsonl",
            [{"problem_id": i, "reward": 1.0} for i in easy],
        )
    env = {"POLARIS_ALLOW_OVER_CONTEXT": "1", "DATA_DIR": str(data), "REWARD_LOG_DIR": str(logs)}
    proc, argvs = _run_script(paths["script"], tmp, env, "trainer.logger=[x]")
    assert proc.returncode == 0, proc.stderr
    stages = json.loads(paths["overrides"].read_text())
    subst = {
        "${DATA_DIR}": str(data),
        "${CKPT_DIR}": f"{tmp}/ckpt",
        "${REWARD_LOG_DIR}": str(logs),
        "${REWARD_FN}": "/r/verl_reward.py",
        "${MODEL_PATH}": "/m/base",
    }
    # The mapping's values with the shell variables expanded: what verl should end up with.
    want = {}
    for k, o in stages.items():
        want[k] = {key: v for key, v in o.items()}
        for key, v in o.items():
            for var, val in subst.items():
                v = v.replace(var, val) if isinstance(v, str) else v
            want[k][key] = v
    return {"argvs": argvs, "want": want, "ids": ids, "data": data, "tmp": tmp}


def test_script_calls_verl_per_stage_with_the_mapping(script_run):
    """The script as verl receives it (after the shell): per stage, exactly the mapping's values;
    between stages the kit's easy-drop really runs on the logged rewards."""
    argvs, want = script_run["argvs"], script_run["want"]
    kinds = [a[1] if a[0] == "-m" else "kit" for a in argvs]
    merge, kit, ppo = "verl.model_merger", "kit", export.ENTRY
    assert kinds == [ppo, merge, kit, ppo, merge, kit, ppo, merge]
    for k, argv in zip("123", [a for a in argvs if a[1:2] == [ppo]], strict=True):
        got = _verl_args(argv)
        assert got.pop("trainer.logger") == "[x]"  # the user's extra override comes last, wins
        expected = {key: export.render_value(v).strip('"') for key, v in want[k].items()}
        expected.pop("trainer.logger")
        assert got == expected
    n = len(script_run["ids"])
    sizes = [pq.read_table(script_run["data"] / f"stage{k}.parquet").num_rows for k in (1, 2, 3)]
    assert sizes == [n, n - 3, n - 4]
    merges = [a for a in argvs if a[1:2] == [merge]]
    assert f"{script_run['tmp']}/ckpt/stage1/global_step_7/actor" in merges[0]


def test_script_stops_before_a_stage_past_the_model_context(paper_export, tmp_path):
    _, paths = paper_export
    proc, argvs = _run_script(paths["script"], tmp_path)
    assert proc.returncode == 3 and "49152 positions" in proc.stderr
    assert argvs == []  # refused before stage 1, not days later at stage 2
    proc, argvs = _run_script(paths["script"], tmp_path / "b", {"STAGES": "1"})
    assert proc.returncode == 0


# ----------------------------------------------------------------------------- verl's schema
CHECK = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    root = importlib.util.find_spec("verl").submodule_search_locations[0]
    stages, out = json.load(sys.stdin), {}
    for k, args in stages.items():
        with initialize_config_dir(os.path.join(root, "trainer", "config"), version_base=None):
            cfg = compose(config_name="ppo_trainer", overrides=args)
        if os.environ.get("VALIDATE") == "1":  # verl's own checks, as main_ppo runs them
            from verl.utils.config import omega_conf_to_dataclass, validate_config
            validate_config(cfg, use_reference_policy=False, use_critic=False)
            omega_conf_to_dataclass(cfg.algorithm)
            omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
        keys = [a.split("=", 1)[0].lstrip("+") for a in args]
        out[k] = {key: OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, key)}))["v"] for key in keys}
    print(json.dumps(out))
    """
)


def _verl_python() -> str | None:
    """A Python with verl + hydra: $POLARIS_VERL_PYTHON, or this one when it has verl."""
    explicit = os.environ.get("POLARIS_VERL_PYTHON")
    if explicit:
        return explicit
    import importlib.util

    ok = importlib.util.find_spec("verl") and importlib.util.find_spec("hydra")
    return sys.executable if ok else None


@pytest.mark.slow  # ~40 s: hydra + verl imports in a second Python
def test_overrides_compose_against_verls_real_config(script_run):
    """The arguments the script gives verl compose with verl's own ppo_trainer config (every key
    exists), pass verl's validate_config, and land with the intended value and type."""
    python = _verl_python()
    if python is None:
        pytest.skip(
            "verl is not installed here (it pins transformers<5.11); set "
            "POLARIS_VERL_PYTHON to a Python with verl==0.9.1 + hydra-core"
        )
    ppo = [a[2:] for a in script_run["argvs"] if a[1:2] == [export.ENTRY]]
    args = {k: argv[:-1] for k, argv in zip("123", ppo, strict=True)}  # drop the test's extra
    validate = os.environ.get("POLARIS_VERL_VALIDATE", "1")
    res = subprocess.run(
        [python, "-c", CHECK],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        env={**os.environ, "VALIDATE": validate},
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    for k, o in script_run["want"].items():
        want = {key.lstrip("+"): v for key, v in o.items()}
        assert got[k] == want, {
            key: (got[k][key], v) for key, v in want.items() if got[k][key] != v
        }


def test_override_keys_exist_in_the_verl_mirror_when_it_matches(paper_export):
    """Static check against verl's generated YAML in a local mirror of its source, same version."""
    repo = Path("/work/.mirror/volcengine+verl/repo")
    if not repo.exists() or shutil.which("git") is None:
        pytest.skip("no local verl mirror")
    git = ["git", "-C", str(repo), "show"]
    version = subprocess.run([*git, "HEAD:verl/version/version"], capture_output=True, text=True)
    if version.stdout.strip() != export.VERL_VERSION:
        pytest.skip(
            f"mirror is verl {version.stdout.strip()!r}, the export targets "
            f"{export.VERL_VERSION}: keys differ between them"
        )
    import yaml  # pragma: no cover - only with a matching mirror

    text = subprocess.run(
        [*git, "HEAD:verl/trainer/config/_generated_ppo_trainer.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tree = yaml.safe_load(text)
    for key in json.loads(paper_export[1]["overrides"].read_text())["1"]:
        if key.startswith("+"):
            continue
        node = tree
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, key
            node = node[part]


# ----------------------------------------------------------------------------- reward + easy-drop
def test_compute_score_grades_like_the_kit_and_logs_problem_ids(tmp_path):
    good = "<think>2+2</think> so \\boxed{4}"
    r = verl_reward.compute_score(
        "math500", good, "4", {"problem_id": "p/1"}, log_dir=str(tmp_path)
    )
    assert r == {"score": 1.0, "acc": 1.0}
    r = verl_reward.compute_score(
        "math500", "\\boxed{4}", "4", {"problem_id": "p/2"}, log_dir=str(tmp_path)
    )
    assert r["score"] == 0.0  # no </think>: a thinking model's answer does not count
    logged = [x for f in tmp_path.glob("*.jsonl") for x in artifacts.read_jsonl(f)]
    assert logged == [{"problem_id": "p/1", "reward": 1.0}, {"problem_id": "p/2", "reward": 0.0}]
    with pytest.raises(KeyError, match="problem_id"):
        verl_reward.compute_score("x", good, "4", {"index": 3}, log_dir=str(tmp_path))


def test_easy_drop_from_log_removes_easy_problems_keeps_rows_intact(paper_export, tmp_path):
    _, paths = paper_export
    table = pq.read_table(paths["stage1"])
    ids = [e["problem_id"] for e in table.column("extra_info").to_pylist()]
    logs = tmp_path / "logs"
    # ids[0]: 10/10 correct (easy, dropped); ids[1]: 9/10 = 0.9, not > 0.9 (kept);
    # ids[2]: 10 correct + one None (None counts 0: 10/11 = 0.909 > 0.9, dropped); rest unseen.
    for host, recs in {
        "a": [(ids[0], 1.0)] * 5 + [(ids[1], 1.0)] * 5 + [(ids[2], 1.0)] * 10,
        "b": [(ids[0], 1.0)] * 5 + [(ids[1], 1.0)] * 4 + [(ids[1], 0.0), (ids[2], None)],
    }.items():
        artifacts.append_jsonl(
            logs / f"rewards-{host}-1.jsonl", [{"problem_id": p, "reward": r} for p, r in recs]
        )
    out = tmp_path / "stage2.parquet"
    res = verl_reward.easy_drop_from_log(logs, paths["stage1"], out, threshold=0.9)
    assert res == {"kept": len(ids) - 2, "dropped": 2, "log_records": 31}
    kept = pq.read_table(out)
    assert kept.schema == table.schema
    kept_ids = [e["problem_id"] for e in kept.column("extra_info").to_pylist()]
    assert kept_ids == [i for i in ids if i not in (ids[0], ids[2])]
    assert kept.slice(0, 1).to_pylist()[0] == table.slice(1, 1).to_pylist()[0]  # row unchanged
    dropped = pd.read_parquet(tmp_path / "stage2_easy_dropped.parquet")
    assert set(dropped.problem_id) == {ids[0], ids[2]}
    with pytest.raises(FileNotFoundError, match="no reward logs"):
        verl_reward.easy_drop_from_log(tmp_path / "none", paths["stage1"], out)


# ----------------------------------------------------------------------------- cost table
def test_scale_table_is_calibrated_and_scales_with_tokens_and_params():
    t = scale.scale_table().set_index("preset")
    assert t.loc[PAPER, "gpu_hours"] == pytest.approx(28 * 24 * 32)
    assert t.loc[PAPER, "days"] == pytest.approx(28.0)
    # tokens/step, stage 1 of Qwen3-4B: 128 x 8 x (200 + 0.5 x 39,936) = 20.65M
    assert t.loc[PAPER, "tokens_per_step_m"][0] == pytest.approx(20.7, abs=0.05)
    r7 = t.loc["r1-distill-7b-paper"]
    ratio = (r7.total_tokens_b * r7.params_b) / (
        t.loc[PAPER, "total_tokens_b"] * t.loc[PAPER, "params_b"]
    )
    assert r7.gpu_hours == pytest.approx(ratio * 28 * 24 * 32)
    longer = scale.scale_table([PAPER], fill=1.0).gpu_hours[0]
    assert longer == pytest.approx(28 * 24 * 32)  # calibration absorbs the fill for the anchor
    with pytest.raises(ValueError, match="fill"):
        scale.scale_table(fill=0)
    assert "| qwen3-4b-paper |" in scale.scale_markdown()


def test_scaling_doc_table_is_the_generated_one():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scaling_out.md").read_text()
    table = doc.split("<!-- scale-table -->\n")[1].split("\n<!-- /scale-table -->")[0]
    assert table == scale.scale_markdown(), (
        "regenerate with polaris_lib.scale_out.cost.scale_markdown()"
    )


# ----------------------------------------------------------------------------- hostile values
def test_hostile_values_never_run_in_the_launch_script(tmp_path):
    """Issue 13 item 6: model.name_or_path (and a probe source) pasted unescaped into
    run_verl.sh ran `$(...)` on `bash run_verl.sh`. Every value is now one quoted shell word."""
    trap = tmp_path / "trap"
    trap.mkdir()
    names = [
        f"Q$(touch {trap}/p1)",
        f"Q`touch {trap}/p2`",
        f'Q"; touch {trap}/p3; echo "',
        f"Q'; touch {trap}/p4; echo '",
        f"Q${{X:-$(touch {trap}/p5)}}",
    ]
    for i, name in enumerate(names):
        run = apply_overrides(get_preset(PAPER), {"model.name_or_path": name})
        stages = {
            st.stage: export.verl_overrides(
                run, st.stage, temperature=1.0, paths=export.SHELL_PATHS
            )
            for st in run.stages
        }
        temps = {k: f"probe of run x$(touch {trap}/c{i})" for k in stages}
        script = tmp_path / f"run{i}" / "run_verl.sh"
        script.parent.mkdir()
        script.write_text(export.render_script(run, stages, temps) + "\n")
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        # the over-context guard echoes the name; then stage 1 alone runs to the end (fake verl)
        proc, _ = _run_script(script, tmp_path / f"a{i}", {"MODEL_PATH": ""})
        assert proc.returncode == 3 and name in proc.stderr, proc.stderr
        proc, argvs = _run_script(script, tmp_path / f"b{i}", {"MODEL_PATH": "", "STAGES": "1"})
        assert proc.returncode == 0, proc.stderr
        got = _verl_args(argvs[0])
        assert got["actor_rollout_ref.model.path"] == name  # verl gets the name, verbatim
        assert list(trap.iterdir()) == [], f"{name!r} ran a command"
    with pytest.raises(ConfigError, match="control characters"):
        apply_overrides(get_preset(PAPER), {"model.name_or_path": "a\ntouch x"})


def test_render_value_escapes_all_but_the_scripts_own_variables():
    assert export.render_value("${DATA_DIR}/stage1.parquet") == '"${DATA_DIR}/stage1.parquet"'
    assert export.render_value('${CKPT_DIR}/a$(b)`c`"') == '"${CKPT_DIR}/a\\$(b)\\`c\\`\\""'
