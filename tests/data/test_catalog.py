"""Tests for the dataset catalog, loaders, verl format and validation (polaris_lib.data.catalog)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from polaris_lib import data, toy
from polaris_lib.config import ToyConfig
from polaris_lib.data import (
    INSTRUCTION_SUFFIX,
    DataUnavailableError,
    build_messages,
    catalog,
    catalog_entry,
    gold_answers,
    list_datasets,
    load_dataset,
    load_file,
    normalise_answer,
    to_verl,
    validate,
)

ROWS = {
    "aime24": 30,
    "aime25": 30,
    "amc23": 83,
    "minerva": 272,
    "olympiad": 675,
    "math500": 500,
    "gsm8k": 1319,
}
VERL = ["aime24", "aime25", "amc23", "minerva", "olympiad"]


@pytest.fixture(scope="module")
def frames(data_dir):
    """Every local dataset, loaded once for the module."""
    return {name: load_dataset(name, data_dir=data_dir) for name in ROWS}


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(catalog, "LOCAL_DATA_DIR", tmp_path / "no-local-data")


def _good_frame(n=3):
    return pd.DataFrame(
        {
            "problem_id": [f"t/{i}" for i in range(n)],
            "problem": [f"What is {i}+1?" for i in range(n)],
            "answer": [str(i + 1) for i in range(n)],
            "answers": [[str(i + 1)] for i in range(n)],
            "source": "t",
        }
    )


# ----------------------------------------------------------------------------- catalog
def test_catalog_names_the_recipe_datasets():
    names = list_datasets()
    for name in [*ROWS, "polaris53k", "deepscaler", "toy"]:
        assert name in names
    assert catalog_entry("polaris53k").hub == "POLARIS-Project/Polaris-Dataset-53K"
    assert catalog_entry("OlympiadBench").name == "olympiad"  # alias, case-insensitive
    ks = {n: (catalog_entry(n).eval_k, catalog_entry(n).eval_k_source) for n in ROWS}
    assert ks["aime24"] == ks["aime25"] == (32, "paper")
    assert ks["amc23"] == (8, "paper") and ks["minerva"] == ks["olympiad"] == (4, "paper")
    assert ks["math500"] == (4, "kit") and ks["gsm8k"] == (1, "kit")
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        catalog_entry("nope")


def test_contamination_resistant_benchmarks_are_in_the_catalog(tmp_path, monkeypatch):
    """AIME 2026 and HMMT Feb 2025: MathArena on the hub, or a local parquet (problem_idx ids)."""
    for name, hub in (("aime26", "MathArena/aime_2026"), ("hmmt25", "MathArena/hmmt_feb_2025")):
        e = catalog_entry(name)
        assert e.hub == hub and e.local == f"benchmarks/{name}.parquet" and e.role == "eval"
    (tmp_path / "benchmarks").mkdir()
    pd.DataFrame(
        {"problem_idx": [1, 2], "problem": ["What is 1+1?", "What is 2+2?"], "answer": ["2", "4"]}
    ).to_parquet(tmp_path / "benchmarks" / "aime26.parquet")
    df = load_dataset("aime2026", data_dir=tmp_path)
    assert df["problem_id"].tolist() == ["aime26/1", "aime26/2"] and df["answers"][1] == ["4"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="MathArena/hmmt_feb_2025"):
        load_dataset("hmmt25", data_dir=tmp_path)


def test_catalog_entry_validation():
    with pytest.raises(ValueError, match="at least one of local, hub or generator"):
        data.CatalogEntry(name="x")
    with pytest.raises(ValueError, match="local_format must be one of"):
        data.CatalogEntry(name="x", local="a.csv", local_format="csv")
    with pytest.raises(ValueError, match="unknown answer_parser"):
        data.CatalogEntry(name="x", hub="a/b", answer_parser="nope")


# ----------------------------------------------------------------------------- local files
@pytest.mark.parametrize("name", list(ROWS))
def test_local_file_loads_with_schema(frames, name):
    df = frames[name]
    assert len(df) == ROWS[name]
    assert list(df.columns[:5]) == ["problem_id", "problem", "answer", "answers", "source"]
    assert df["problem_id"].is_unique
    assert df["problem_id"].str.startswith(f"{name}/").all()
    assert (df["source"] == name).all()
    assert df["answer"].map(lambda a: isinstance(a, str) and a == a.strip() and a != "").all()
    assert all(
        a[0] == b and len(set(a)) == len(a)
        for a, b in zip(df["answers"], df["answer"], strict=True)
    )
    assert df.attrs["origin"].startswith("file:") and df.attrs["validation"].ok


def test_ids_stable_across_loads_and_limit(frames, data_dir):
    for name in ("olympiad", "math500", "gsm8k"):
        again = load_dataset(name, data_dir=data_dir)
        assert again["problem_id"].tolist() == frames[name]["problem_id"].tolist()
        head = load_dataset(name, data_dir=data_dir, limit=5)
        assert head["problem_id"].tolist() == frames[name]["problem_id"].tolist()[:5]
    assert frames["math500"]["problem_id"][0] == "math500/test/precalculus/807.json"
    assert frames["aime25"]["problem_id"][3] == "aime25/3"  # from extra_info.id


def test_suffix_stripped_and_not_doubled(frames, data_dir):
    raw = pd.read_parquet(data_dir / "benchmarks" / "aime24.parquet")
    assert raw["prompt"][0][0]["content"].endswith(INSTRUCTION_SUFFIX)
    for name in VERL:
        assert (
            not frames[name]["problem"].str.contains("Let's think step by step", regex=False).any()
        )
    problem = frames["aime24"]["problem"][0]
    msgs = build_messages(problem)
    assert msgs == [{"role": "user", "content": f"{problem} {INSTRUCTION_SUFFIX}"}]
    assert build_messages(msgs[0]["content"]) == msgs  # already suffixed: applied once
    assert build_messages(problem, suffix="")[0]["content"] == problem
    assert msgs[0]["content"].count(INSTRUCTION_SUFFIX) == 1


def test_float_gold_normalised(frames):
    amc = frames["amc23"]
    assert amc["answer"][0] == "142"
    assert not amc["answer"].str.endswith(".0").any()
    assert normalise_answer(142.0) == ["142"]
    assert normalise_answer(np.float64(0.5)) == ["0.5"]
    assert normalise_answer(7) == ["7"]
    assert normalise_answer(None) is None and normalise_answer(float("nan")) is None
    with pytest.raises(TypeError):
        normalise_answer(True)


def test_list_gold_kept_as_alternatives(frames):
    minerva = frames["minerva"]
    assert not minerva["answers"].map(lambda a: any(s != s.strip() for s in a)).any()
    assert minerva["answers"].map(len).max() >= 2
    by_id = minerva.set_index("problem_id")
    first_multi = minerva[minerva["answers"].map(len) > 1].iloc[0]
    assert by_id.loc[first_multi["problem_id"], "answer"] == first_multi["answers"][0]
    assert normalise_answer(np.array(["11000\n", "11000"], dtype=object)) == ["11000"]
    golds = gold_answers(minerva)
    assert all(
        g == a[0] if len(a) == 1 else g == list(a)
        for g, a in zip(golds, minerva["answers"], strict=True)
    )
    assert isinstance(gold_answers(frames["olympiad"])[0], str)  # one-element list -> str


def test_gsm8k_answer_is_final_number(frames):
    gsm = frames["gsm8k"]
    assert gsm["answer"][0] == "18"
    assert gsm["answer"].str.fullmatch(r"-?\d+(\.\d+)?").all()  # commas removed
    assert gsm["solution"][0].endswith("#### 18")
    assert data.ANSWER_PARSERS["gsm8k"]("so #### 1,234") == "1234"


@pytest.mark.parametrize("name", list(ROWS))
def test_verl_round_trip(frames, tmp_path, name):
    df = frames[name]
    path = to_verl(df, tmp_path / f"{name}.parquet")
    back = load_file(path)
    pd.testing.assert_frame_equal(back, df)
    table = pq.read_table(path).to_pylist()
    content = table[0]["prompt"][0]["content"]
    assert content.endswith(INSTRUCTION_SUFFIX) and content.count(INSTRUCTION_SUFFIX) == 1
    assert table[0]["reward_model"]["style"] == "rule"
    assert table[0]["extra_info"]["problem_id"] == df["problem_id"][0]
    assert table[0]["extra_info"]["index"] == 0


def test_load_file_matches_catalog(frames, data_dir):
    df = load_file(data_dir / "benchmarks" / "amc23.parquet")
    pd.testing.assert_frame_equal(df, frames["amc23"])
    jl = load_file(data_dir / "pools" / "gsm8k_test.jsonl", column_map={"problem": "question"})
    assert jl["problem_id"][0] == "gsm8k_test/0" and len(jl) == 1319


# ----------------------------------------------------------------------------- validation
def test_validate_reports_offending_ids():
    df = _good_frame(6)
    df.loc[1, "answer"] = None  # missing answer
    df.loc[2, "problem"] = "   "  # empty problem
    df.loc[4, "problem_id"] = "t/3"  # duplicate id
    df["answer"] = df["answer"].astype(object)
    df.loc[5, "answer"] = 6  # wrong type
    report = validate(df, name="hand")
    assert not report.ok and report.n_rows == 6
    assert report.counts == {
        "missing_answer": 1,
        "empty_problem": 1,
        "duplicate_id": 1,
        "wrong_type": 1,
    }
    assert report.bad_rows == [1, 2, 4, 5]
    msg = report.message()
    for needle in ("t/1", "t/2", "t/3 (row 4)", "t/5", "4 of 6 rows invalid"):
        assert needle in msg
    assert validate(_good_frame(), name="ok").ok


def test_validate_missing_columns_and_long_lists():
    assert validate(_good_frame().drop(columns="answer"), name="x").missing_columns == ["answer"]
    df = _good_frame(25)
    df["answer"] = ""
    msg = validate(df, name="many").message()
    assert "empty_answer=25" in msg and "... and 15 more rows" in msg


def test_bad_file_raises_or_drops(tmp_path):
    bad = pd.DataFrame({"problem": ["ok?", "", "fine?"], "answer": ["1", "2", None]})
    path = tmp_path / "bad.jsonl"
    bad.to_json(path, orient="records", lines=True)
    with pytest.raises(ValueError, match=r"bad/1: problem is empty") as err:
        load_file(path)
    assert "bad/2: answer is missing" in str(err.value)
    kept = load_file(path, on_invalid="drop")
    assert kept["problem_id"].tolist() == ["bad/0"]
    assert kept.attrs["validation"].bad_ids == ["bad/1", "bad/2"]


# ----------------------------------------------------------------------------- resolution
def test_data_dir_env_override(frames, tmp_path, monkeypatch):
    small = frames["math500"].head(3)
    (tmp_path / "pools").mkdir()
    small.drop(columns=["problem_id", "answers", "source"]).to_json(
        tmp_path / "pools" / "math500.jsonl", orient="records", lines=True
    )
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    df = load_dataset("math500")
    assert len(df) == 3 and df.attrs["origin"] == f"file:{tmp_path / 'pools' / 'math500.jsonl'}"
    pd.testing.assert_frame_equal(df, small)
    other = tmp_path / "other"
    to_verl(frames["aime24"].head(2), other / "benchmarks" / "aime24.parquet")
    assert len(load_dataset("aime24", data_dir=other)) == 2  # the argument beats the env var


def test_catalog_load_raises_or_drops(tmp_path):
    (tmp_path / "pools").mkdir()
    rows = [
        {"problem": "a?", "answer": "1", "unique_id": "u1"},
        {"problem": "b?", "answer": "", "unique_id": "u2"},
        {"problem": "c?", "answer": "3", "unique_id": None},
    ]
    pd.DataFrame(rows).to_json(tmp_path / "pools" / "math500.jsonl", orient="records", lines=True)
    with pytest.raises(ValueError, match=r"math500/u2: answer is empty") as err:
        load_dataset("math500", data_dir=tmp_path)
    assert "row 2: problem_id is missing" in str(err.value)
    kept = load_dataset("math500", data_dir=tmp_path, on_invalid="drop")
    assert kept["problem_id"].tolist() == ["math500/u1"]
    assert kept.attrs["validation"].counts == {"empty_answer": 1, "missing_id": 1}
    with pytest.raises(ValueError, match="limit must be >= 0"):
        load_dataset("math500", data_dir=tmp_path, limit=-1)


def test_local_only_without_data_dir(no_data_env):
    with pytest.raises(FileNotFoundError, match="POLARIS_DATA_DIR"):
        load_dataset("amc23")


def test_offline_hub_gives_clear_error(monkeypatch, tmp_path, no_data_env):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="POLARIS-Project/Polaris-Dataset-53K"):
        load_dataset("polaris53k")
    # A benchmark with a local entry: the message says which variable and file fix it.
    with pytest.raises(DataUnavailableError, match=r"set POLARIS_DATA_DIR .*aime24\.parquet"):
        load_dataset("aime24", data_dir=tmp_path)


def _fake_hub(monkeypatch, table: dict, calls: list):
    datasets = pytest.importorskip("datasets")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def fake_load(path, name=None, split=None):
        calls.append((path, name, split))
        if isinstance(table, Exception):
            raise table
        return datasets.Dataset.from_dict(table)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(catalog, "hub_reachable", lambda: True)  # the stand-in hub answers


def test_hub_path_maps_columns(monkeypatch, no_data_env):
    calls = []
    gsm = {"question": ["a?", "b?"], "answer": ["x #### 1,000", "y #### 2"]}
    _fake_hub(monkeypatch, gsm, calls)
    df = load_dataset("gsm8k")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert df["problem_id"].tolist() == ["gsm8k/0", "gsm8k/1"]
    assert df["answer"].tolist() == ["1000", "2"] and df.attrs["origin"] == "hub:openai/gsm8k@test"
    pol = {"problem": ["p1", "p2"], "answer": ["3", "4"], "difficulty": ["1/8", "7/8"]}
    _fake_hub(monkeypatch, pol, calls)
    df = load_dataset("polaris53k", split="train")
    assert calls[-1] == ("POLARIS-Project/Polaris-Dataset-53K", None, "train")
    assert df["difficulty"].tolist() == ["1/8", "7/8"] and df["problem_id"][1] == "polaris53k/1"


def test_hub_failure_is_wrapped(monkeypatch, no_data_env):
    _fake_hub(monkeypatch, ConnectionError("Couldn't reach the Hub"), [])
    with pytest.raises(DataUnavailableError, match=r"aime24.*ConnectionError.*POLARIS_DATA_DIR"):
        load_dataset("aime24")


def test_unexpected_kwargs_rejected(data_dir):
    with pytest.raises(TypeError, match="unexpected arguments"):
        load_dataset("aime24", data_dir=data_dir, n=3)
    with pytest.raises(ValueError, match="on_invalid"):
        load_dataset("aime24", data_dir=data_dir, on_invalid="ignore")


# ----------------------------------------------------------------------------- toy
def test_toy_entry_generates_valid_schema():

    a = load_dataset("toy", split="train", n=8, seed=0)
    b = load_dataset("toy", split="train", n=8, seed=0)
    assert len(a) == 8 and validate(a, name="toy").ok
    assert a["problem_id"].tolist() == b["problem_id"].tolist()
    assert a.attrs["origin"] == "generated:polaris_lib.toy:make_problems"
    direct = toy.make_problems(ToyConfig(), "train", n=8, seed=0)
    pd.testing.assert_frame_equal(a.drop(columns="answers"), direct[a.columns.drop("answers")])
    assert a["answers"].map(len).eq(1).all()
    # toy_cfg and the generator's own keywords pass through.
    c = load_dataset("toy", toy_cfg=ToyConfig(), split="train", n=4, min_terms=3, max_terms=3)
    assert (c["difficulty"] == 3).all()
    with pytest.raises(TypeError, match="needs n="):
        load_dataset("toy")


# --- issue 13 item 14 ------------------------------------------------------------------------
def test_malformed_or_non_utf8_jsonl_names_file_and_line(tmp_path):
    good = '{"problem": "1+1", "answer": "2"}\n'
    path = tmp_path / "pool.jsonl"
    path.write_text(good + '{"problem": "2+2", "answer": "4"\n' + good)
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: malformed JSON")):
        load_file(path)
    path.write_bytes(good.encode() + b'{"problem": "caf\xe9", "answer": "4"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: not UTF-8 text")):
        load_file(path)
    path.write_text(good + "[1, 2]\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: a jsonl row must be a JSON object")):
        load_file(path)


@pytest.mark.parametrize("answer", ["Infinity", "-Infinity", '"inf"', "1e999"])
def test_an_infinite_answer_is_not_a_gold(tmp_path, answer):
    path = tmp_path / "pool.jsonl"
    rows = '{"id": "ok", "problem": "1+1", "answer": "2"}\n'
    rows += '{"id": "bad7", "problem": "big", "answer": ' + answer + "}\n"
    path.write_text(rows)
    with pytest.raises(ValueError, match=r"pool/bad7: answer .* is not a finite value"):
        load_file(path, id_column="id")
    df = load_file(path, id_column="id", on_invalid="drop")
    assert list(df["problem_id"]) == ["pool/ok"]


# ----------------------------------------------------------------------------- availability
def test_hub_check_is_immediate_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog.hub_reachable.cache_clear()
    assert catalog.hub_reachable() is False
    catalog.hub_reachable.cache_clear()


def test_local_data_folder_inside_the_repository(monkeypatch, tmp_path, data_dir):
    """Without POLARIS_DATA_DIR the repository's data/local/ is the local data folder."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    local = tmp_path / "local"
    (local / "benchmarks").mkdir(parents=True)
    (local / "benchmarks" / "aime24.parquet").write_bytes(
        (data_dir / "benchmarks" / "aime24.parquet").read_bytes()
    )
    monkeypatch.setattr(catalog, "LOCAL_DATA_DIR", local)
    assert data.resolve_data_dir() == local
    assert (
        load_dataset("aime24").attrs["origin"] == f"file:{local / 'benchmarks' / 'aime24.parquet'}"
    )


def test_what_a_run_needs_is_checked_before_it_starts(monkeypatch, no_data_env, data_dir):
    """Offline without local files: the tiny preset's AIME harness checks are skipped with a
    reason; a preset whose benchmarks mean something fails at once, naming what is missing."""
    from polaris_lib.config import apply_overrides, get_preset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    skipped = data.check_available(get_preset("tiny"))
    assert set(skipped) == {"aime24", "aime25", "aime26", "hmmt25"}
    assert "data/local/" in skipped["aime24"] and "benchmarks/aime26.parquet" in skipped["aime26"]
    with pytest.raises(DataUnavailableError, match=r"curation\.pool .*eval\.benchmarks aime24"):
        data.check_available(get_preset("qwen3-0.6b-24gb"))
    # the shared data holds AIME 2024/2025 but not the contamination-resistant sets
    assert set(data.check_available(get_preset("tiny"), data_dir=data_dir)) == {"aime26", "hmmt25"}
    toy_only = apply_overrides(get_preset("tiny"), {"eval.benchmarks": ["toy"]})
    assert data.check_available(toy_only) == {}
