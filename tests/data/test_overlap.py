"""Issue 14 item 5: no run trains on a test set (training pool vs evaluation benchmarks)."""

from __future__ import annotations

import pandas as pd
import pytest

from polaris_lib import curate, data
from polaris_lib.config import ConfigError, apply_overrides, get_preset
from polaris_lib.config.presets import PRESETS
from polaris_lib.pipeline import run_pipeline

LOCAL = ["aime24", "aime25", "amc23", "minerva", "olympiad", "math500", "gsm8k"]


def test_the_same_problem_matches_across_spacing_case_and_math_delimiters(data_dir):
    aime = data.load_dataset("aime24", data_dir=data_dir)
    copied = aime.head(3).copy()
    copied["problem"] = [
        "  " + p.upper().replace(" ", "\n ").replace("$", "\\(", 1) for p in copied.problem
    ]
    copied["problem_id"] = ["mine/a", "mine/b", "mine/c"]
    fresh = pd.DataFrame({"problem_id": ["mine/d"], "problem": ["What is 1 + 1?"]})
    pool = pd.concat([copied, fresh], ignore_index=True)
    found = data.overlaps(
        pool, {"aime24": aime, "aime25": data.load_dataset("aime25", data_dir=data_dir)}
    )
    assert list(found) == ["aime24"]
    assert found["aime24"] == list(zip(copied.problem_id, aime.problem_id.head(3), strict=True))


def test_local_benchmarks_and_pools_share_no_problem(data_dir):
    frames = {n: data.load_dataset(n, data_dir=data_dir) for n in LOCAL}
    for name, df in frames.items():
        assert data.overlaps(df, {m: f for m, f in frames.items() if m != name}) == {}, name


def test_default_pools_are_training_sets_not_benchmarks():
    for name in PRESETS:
        run = get_preset(name)
        entry = data.catalog_entry(run.curation.pool)
        assert entry.role in ("train", "toy"), (name, run.curation.pool)
        # the toy is one generator with disjoint train and test splits (tested below)
        assert run.curation.pool == "toy" or run.curation.pool not in run.eval.benchmarks


def test_tiny_default_pool_passes_the_check(data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    run = apply_overrides(get_preset("tiny"), {"curation.max_problems": 64})
    pool = curate.pool_problems(run)  # checks toy train vs toy test, aime24, aime25
    assert len(pool) == 64


def test_curation_refuses_a_pool_holding_a_benchmark_and_names_the_ids(data_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    run = apply_overrides(get_preset("tiny"), {"curation.pool": "aime24"})
    with pytest.raises(data.DataOverlapError, match=r"aime24: 30 shared \(aime24/0 = aime24/0"):
        curate.pool_problems(run)


def test_polaris_run_refuses_it_before_step_01(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))
    with pytest.raises(ConfigError, match=r"contains evaluation problems.*aime25: 30 shared"):
        run_pipeline(
            "tiny",
            "leak",
            overrides={"curation.pool": "aime25"},
            reports_dir=tmp_path,
            notebooks_dir=tmp_path,
        )
    assert not (tmp_path / "leak").exists()
