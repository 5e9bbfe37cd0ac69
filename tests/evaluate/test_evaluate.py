"""Evaluation (05): summaries on hand-made tables, intervals, suffix, resume, regrade."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from polaris_lib import artifacts, evaluate, metrics, paper
from polaris_lib.config import apply_overrides, get_preset
from polaris_lib.policy import load as load_mod
from polaris_lib.policy.load import load_policy
from polaris_lib.policy.rollouts import RESPONSE_COLUMNS, regrade, rollout


def _table(correct: dict[str, list[int]], checkpoint="base", benchmark="b", **cols) -> pd.DataFrame:
    rows = [
        dict(
            checkpoint=checkpoint,
            benchmark=benchmark,
            problem_id=p,
            sample_idx=j,
            correct=float(c),
            n_tokens=10 * (j + 1),
            truncated=False,
            reason="correct" if c else "wrong",
            text="",
        )
        for p, cs in correct.items()
        for j, c in enumerate(cs)
    ]
    df = pd.DataFrame(rows)
    for k, v in cols.items():
        df[k] = v
    return df


HAND = {"p1": [1, 0, 0, 1], "p2": [1, 1, 1, 1], "p3": [0, 0, 0, 0]}


def test_avg_and_pass_at_k_on_a_hand_made_table():
    s = metrics.summarize(_table(HAND), n_boot=200).iloc[0]
    assert s["k"] == 4 and s["problems"] == 3 and s["responses"] == 12
    assert s["avg"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert s["pass_at_k"] == pytest.approx(2 / 3)  # p1 and p2 solved at least once
    assert (s["solve_none"], s["solve_all"]) == (1, 1)
    assert s["mean_len"] == pytest.approx(25.0)
    curve = metrics.pass_at_k_curve(_table(HAND)).set_index("k")["pass_at_k"]
    # p1: 2 of 4 correct -> pass@1 = 0.5, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@3 = pass@4 = 1.
    assert curve[1] == pytest.approx((0.5 + 1 + 0) / 3)
    assert curve[2] == pytest.approx((5 / 6 + 1 + 0) / 3)
    assert curve[3] == pytest.approx(2 / 3) and curve[4] == pytest.approx(2 / 3)
    assert list(curve.index) == [1, 2, 3, 4]


def test_summary_rates_ungraded_and_per_problem():
    df = _table(HAND)
    df.loc[0, ["truncated", "reason", "correct"]] = [True, "no_think_close", 0.0]
    df.loc[1, "reason"] = "no_boxed"  # finished but unformatted: a format error
    df.loc[5, "correct"] = np.nan  # an unparseable gold: ungraded, excluded from the mean
    s = metrics.summarize(df, n_boot=100).iloc[0]
    assert s["truncation_rate"] == pytest.approx(1 / 12)
    assert s["format_error_rate"] == pytest.approx(1 / 12)  # the truncated one is not counted
    assert s["ungraded"] == 1
    pp = metrics.per_problem_table(df).set_index("problem_id")
    assert pp.loc["p1", "accuracy"] == pytest.approx(1 / 4) and pp.loc["p2", "n"] == 3


def test_summary_rejects_uneven_or_duplicated_samples():
    df = _table(HAND).iloc[:-1]
    with pytest.raises(ValueError, match="p3"):
        metrics.summarize(df)
    with pytest.raises(ValueError, match="duplicate"):
        metrics.summarize(pd.concat([_table(HAND), _table(HAND).iloc[:1]]))


def test_bootstrap_interval_covers_the_truth_on_synthetic_benchmarks():
    """Problems with true accuracy ~ U(0,1) (mean 0.5), k=4: the 95% interval covers 0.5 ~95%."""
    rng = np.random.default_rng(0)
    hits, reps = 0, 60
    for r in range(reps):
        p = rng.uniform(size=80)
        table = {f"q{i}": rng.binomial(1, p[i], size=4).tolist() for i in range(80)}
        s = metrics.summarize(_table(table), n_boot=400, seed=r).iloc[0]
        hits += s["ci_lo"] <= 0.5 <= s["ci_hi"]
        assert s["ci_lo"] <= s["avg"] <= s["ci_hi"]
    assert 0.85 <= hits / reps <= 1.0


def test_length_buckets_and_paper_comparison():
    b = metrics.length_bucket([10, 40, 41, 80, 81], 80)
    assert b.tolist() == ["< 40", "40-80", "40-80", "40-80", "> 80"]
    acc = metrics.length_bucket_accuracy(_table(HAND), 25)  # lengths 10..40 against L=25
    assert acc["bucket"].astype(str).tolist() == ["< 12.5", "12.5-25", "> 25"]
    assert acc["n"].tolist() == [3, 3, 6] and acc["share"].sum() == pytest.approx(1.0)
    s = metrics.summarize(
        pd.concat([_table(HAND, benchmark="aime24"), _table(HAND, "final", "aime24")]), n_boot=50
    )
    cmp = paper.paper_comparison(s, "Qwen/Qwen3-4B").set_index("checkpoint")
    assert cmp.loc["base", "paper"] == 73.8 and cmp.loc["final", "paper"] == 81.2
    assert cmp.loc["final", "paper_model"] == "POLARIS-4B-Preview"
    assert paper.paper_comparison(s, "toy").empty
    m = evaluate.eval_metrics(s, {"aime24": True})
    assert m["eval/aime24/avg@4"] == pytest.approx(0.5) and m["eval/aime24/harness_only"] is True
    assert m["eval/base/aime24/avg@4"] == pytest.approx(0.5) and "bootstrap" in m["eval/interval"]
    assert evaluate.headline(m) == {"eval/aime24/avg@4": 0.5, "eval/aime24/harness_only": True}


def test_checkpoint_names_resolve_to_stage_folders(tmp_path):
    final = tmp_path / "checkpoints" / "stage2" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    assert artifacts.named_checkpoint(tmp_path, "base", 2) is None
    assert artifacts.named_checkpoint(tmp_path, "final", 2) == str(final)
    assert artifacts.named_checkpoint(tmp_path, "stage2", 2) == str(final)
    with pytest.raises(FileNotFoundError, match="STAGE=1"):
        artifacts.named_checkpoint(tmp_path, "stage1", 2)
    with pytest.raises(ValueError, match="stage1"):
        artifacts.named_checkpoint(tmp_path, "stage3", 2)


def test_instruction_suffix_is_applied_once_to_verl_aime(data_dir):
    """verl AIME prompts end with the suffix; the loader strips it and sampling adds it once."""
    from polaris_lib.data import INSTRUCTION_SUFFIX
    from polaris_lib.policy.sampling import prompt_texts
    from polaris_lib.toy import build_tokenizer

    cfg = apply_overrides(get_preset("qwen3-4b-paper"), {"eval.max_problems": 3})
    problems = evaluate.load_benchmark("aime24", cfg, data_dir)
    assert len(problems) == 3
    raw = pd.read_parquet(data_dir / "benchmarks" / "aime24.parquet")
    assert INSTRUCTION_SUFFIX in raw["prompt"].iloc[0][0]["content"]  # the file carries it
    seen = {}

    def recording_sample(model, tok, probs, **kw):
        seen["prompts"] = prompt_texts(tok, probs, kw["suffix"])
        return pd.DataFrame(
            dict(
                problem_id=probs.problem_id,
                sample_idx=0,
                text="",
                n_tokens=1,
                finished=True,
                truncated=False,
            )
        )

    settings = {**evaluate.pair_settings(cfg, "aime24", None), "k": 1}
    rollout(
        None,
        build_tokenizer(),
        problems,
        **evaluate.rollout_settings(settings),
        sample_fn=recording_sample,
    )
    assert [p.count(INSTRUCTION_SUFFIX) for p in seen["prompts"]] == [1, 1, 1]


def _tiny_toy_cfg(tmp_path):
    return apply_overrides(
        get_preset("tiny"),
        {
            "run_dir": str(tmp_path),
            "eval.benchmarks": ["toy"],
            "eval.max_problems": 3,
            "eval.samples": {"toy": 2},
            "eval.checkpoints": ["base"],
        },
    )


def test_evaluation_resumes_and_regrades(tmp_path):
    """Second call loads and samples nothing; regrade recomputes `correct` from the kept text."""
    from polaris_lib.toy import reference_solution

    cfg, calls = _tiny_toy_cfg(tmp_path), {"load": 0, "sample": 0}

    def load(cfg, path):
        calls["load"] += 1
        return object(), None

    def fake_sample(model, tok, probs, n, **kw):
        calls["sample"] += 1
        pairs = zip(probs.problem_id, probs.problem, strict=True)
        rows = [
            dict(
                problem_id=p,
                sample_idx=j,
                text=reference_solution(q) if j == 0 else "x",
                n_tokens=5,
                finished=True,
                truncated=False,
            )
            for p, q in pairs
            for j in range(n)
        ]
        return pd.DataFrame(rows)

    out = tmp_path / "05"
    first = evaluate.run_evaluation(
        cfg, out, load_fn=load, sample_fn=fake_sample, log=lambda s: None
    )
    assert calls == {"load": 1, "sample": 1}
    assert list(first.columns) == RESPONSE_COLUMNS and len(first) == 6
    assert first["correct"].tolist() == [1.0, 0.0] * 3
    second = evaluate.run_evaluation(
        cfg, out, load_fn=load, sample_fn=fake_sample, log=lambda s: None
    )
    assert calls == {"load": 1, "sample": 1}
    pd.testing.assert_frame_equal(first, second)
    assert (out / "responses.parquet").exists() and len(evaluate.timings(out)) == 1
    # A changed setting (k) makes the pair unfinished again.
    more = apply_overrides(cfg, {"eval.samples": {"toy": 3}})
    evaluate.run_evaluation(more, out, load_fn=load, sample_fn=fake_sample, log=lambda s: None)
    assert calls == {"load": 2, "sample": 2}
    # So does a different toy world (the base model's weights changed).
    other = apply_overrides(more, {"toy.warmstart_steps": 7})
    evaluate.run_evaluation(other, out, load_fn=load, sample_fn=fake_sample, log=lambda s: None)
    assert calls == {"load": 3, "sample": 3}
    broken = first.assign(correct=1.0 - first["correct"])
    assert regrade(broken)["correct"].tolist() == first["correct"].tolist()


def test_vllm_engine_gets_yarn_through_hf_overrides(tmp_path, monkeypatch):
    """A vLLM preset builds vllm.LLM with YaRN's hf_overrides and extended max_model_len (checked
    with a stand-in vllm module: this machine has no GPU), and linear interpolation likewise."""
    import sys
    import types

    from transformers import Qwen3Config

    Qwen3Config(
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, max_position_embeddings=40960
    ).save_pretrained(tmp_path)
    made = []

    class LLM:
        def __init__(self, **kw):
            made.append(kw)

        def get_tokenizer(self):
            return "tokenizer"

    fake = types.ModuleType("vllm")
    fake.LLM = LLM
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(load_mod, "cuda_available", lambda: True)  # the engine is a stand-in
    cfg = apply_overrides(get_preset("qwen3-4b-paper"), {"model.name_or_path": str(tmp_path)})
    assert load_policy(cfg, None, "yarn")[1] == "tokenizer"
    kw = made[-1]
    # the paper's 96K context with factor 1.5 (RECIPE §6-7), not 1.5 x 32K: the positions past
    # 49,152 exist because max_position_embeddings is raised with it
    assert kw["model"] == str(tmp_path) and kw["dtype"] == "bfloat16"
    assert kw["max_model_len"] == 98304 == kw["hf_overrides"]["max_position_embeddings"]
    rope = kw["hf_overrides"]["rope_parameters"]
    assert rope["rope_type"] == "yarn" and rope["rope_theta"] == 1e6 and rope["factor"] == 1.5
    load_policy(cfg, None)
    assert "hf_overrides" not in made[-1] and "max_model_len" not in made[-1]
    load_policy(cfg, None, "linear")
    assert made[-1]["hf_overrides"]["rope_parameters"] == {
        "rope_type": "linear",
        "factor": 1.5,
        "rope_theta": 1e6,
    }
    assert made[-1]["max_model_len"] == 98304  # the same extended context as YaRN's


def test_each_vllm_engine_is_released_before_the_next_checkpoint_loads(tmp_path, monkeypatch):
    """base and stage1 on a (stand-in) vLLM engine: load, sample, shut down, then the next one."""
    import sys
    import types
    from types import SimpleNamespace

    from polaris_lib import artifacts

    final = artifacts.checkpoint_dir(tmp_path, 1) / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    cfg = apply_overrides(_tiny_toy_cfg(tmp_path), {"eval.checkpoints": ["base", "stage1"]})
    events = []
    state = types.ModuleType("vllm.distributed.parallel_state")
    state.destroy_model_parallel = lambda: events.append("destroy_model_parallel")
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", state)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    LLM = type("LLM", (), {"__module__": "vllm.entrypoints.llm"})

    def load(cfg, path):
        name = "base" if path is None else "stage1"
        events.append(f"load {name}")
        llm = LLM()
        llm.llm_engine = SimpleNamespace(
            engine_core=SimpleNamespace(shutdown=partial(events.append, f"shutdown {name}"))
        )
        return llm, None

    def fake_sample(model, tok, probs, n, **kw):
        events.append("sample")
        rows = [
            dict(problem_id=p, sample_idx=j, text="x", n_tokens=1, finished=True, truncated=False)
            for p in probs.problem_id
            for j in range(n)
        ]
        return pd.DataFrame(rows)

    out = evaluate.run_evaluation(
        cfg, tmp_path / "05", load_fn=load, sample_fn=fake_sample, log=lambda s: None
    )
    per_checkpoint = ["load {}", "sample", "shutdown {}", "destroy_model_parallel"]
    assert events == [e.format(ck) for ck in ("base", "stage1") for e in per_checkpoint]
    assert sorted(set(out.checkpoint)) == ["base", "stage1"]


def test_a_harness_benchmark_without_data_is_skipped_with_a_note(tmp_path, monkeypatch):
    """The tiny preset's AIME pairs only prove the harness: without their files (offline, no
    data folder) the evaluation skips them, says so, and still evaluates the toy benchmark."""
    from polaris_lib.data import catalog

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("POLARIS_DATA_DIR", raising=False)
    monkeypatch.setattr(catalog, "LOCAL_DATA_DIR", tmp_path / "no-local-data")
    cfg = apply_overrides(_tiny_toy_cfg(tmp_path), {"eval.benchmarks": ["toy", "aime24"]})

    def fake_sample(model, tok, probs, n, **kw):
        rows = [
            dict(problem_id=p, sample_idx=j, text="x", n_tokens=1, finished=True, truncated=False)
            for p in probs.problem_id
            for j in range(n)
        ]
        return pd.DataFrame(rows)

    notes = []
    out = evaluate.run_evaluation(
        cfg,
        tmp_path / "05",
        load_fn=lambda c, p: (object(), None),
        sample_fn=fake_sample,
        log=notes.append,
    )
    assert set(out["benchmark"]) == {"toy"}
    assert any(n.startswith("aime24: skipped") and "data/local/" in n for n in notes), notes
    recorded = artifacts.read_json(tmp_path / "05" / "metrics.json")
    assert recorded == {  # the report shows the skip, and every number's context
        "eval/aime24/skipped": evaluate.SKIPPED_NOTE,
        "eval/rope": "none",
        "eval/context": 128,
    }


def test_evaluation_loads_with_yarn_when_its_context_needs_it_and_records_the_context(tmp_path):
    """Past the model's context the evaluation loads every checkpoint with YaRN (the config's
    setting; before, 05 always loaded without it) and records the context used with each pair
    and in metrics.json (eval/context), so no number is read without its context."""
    from polaris_lib.policy.rope import yarn_applied

    paper = get_preset("qwen3-4b-paper")  # 1024 + 90,000 tokens: the paper's 96K with YaRN
    assert evaluate.eval_rope(paper) == "yarn" and evaluate.eval_context(paper) == 98304
    r1 = get_preset("r1-distill-7b-paper")  # its own 131,072 positions hold the budget
    assert evaluate.eval_rope(r1) == "none" and evaluate.eval_context(r1) == 131072

    cfg = apply_overrides(_tiny_toy_cfg(tmp_path), {"eval.max_new_tokens": 96})  # 48 + 96 > 128
    seen = []

    def fake_sample(model, tok, probs, n, **kw):
        seen.append(yarn_applied(model))
        rows = [
            dict(problem_id=p, sample_idx=j, text="x", n_tokens=1, finished=True, truncated=False)
            for p in probs.problem_id
            for j in range(n)
        ]
        return pd.DataFrame(rows)

    evaluate.run_evaluation(cfg, tmp_path / "05", sample_fn=fake_sample, log=lambda s: None)
    assert seen == [True]  # the real loader applied YaRN to the toy model
    settings = evaluate.pair_settings(cfg, "toy", None)
    assert settings["rope"] == "yarn" and settings["context"] == 192  # 128 x 1.5
    recorded = artifacts.read_json(tmp_path / "05" / "metrics.json")
    assert recorded["eval/rope"] == "yarn" and recorded["eval/context"] == 192


# ----------------------------------------------------------------------------- issue 15
def _two_checkpoint_run(tmp_path):
    """A real run_evaluation of base and stage1 on 6 toy problems x 4 samples (stand-in sampler:
    base answers problem i correctly on samples < i % 3, stage1 on samples < i % 3 + 1; every
    response with no </think> carries a boxed right answer the kit's rule refuses)."""
    from polaris_lib.toy import reference_solution

    cfg = apply_overrides(
        get_preset("tiny"),
        {
            "run_dir": str(tmp_path),
            "eval.benchmarks": ["toy"],
            "eval.max_problems": 6,
            "eval.samples": {"toy": 4},
            "eval.checkpoints": ["base", "stage1"],
        },
    )
    artifacts.write_config(tmp_path / artifacts.EVALUATION, cfg)
    stage1 = artifacts.checkpoint_dir(tmp_path, 1) / "final"
    stage1.mkdir(parents=True)
    (stage1 / "config.json").write_text("{}")  # the stand-in loader never reads it
    ck = {"n": 0}

    def load(cfg, path):
        ck["n"] += 1
        return object(), None

    def fake_sample(model, tok, probs, n, **kw):
        rows = []
        for i, (p, q) in enumerate(zip(probs.problem_id, probs.problem, strict=True)):
            right = reference_solution(q)
            answer = right.rsplit("</think>", 1)[-1]
            for j in range(n):
                good = j < i % 3 + (ck["n"] - 1)
                text = right if good else ("<think>cut short " + answer if j == n - 1 else "x")
                rows.append(
                    dict(
                        problem_id=p,
                        sample_idx=j,
                        text=text,
                        n_tokens=5 + j,
                        finished=True,
                        truncated=False,
                    )
                )
        return pd.DataFrame(rows)

    out = tmp_path / artifacts.EVALUATION
    responses = evaluate.run_evaluation(cfg, out, load_fn=load, sample_fn=fake_sample, log=print)
    return cfg, out, responses


def test_protocol_paired_audit_selection_and_planner_on_an_evaluation(tmp_path):
    cfg, out, responses = _two_checkpoint_run(tmp_path)
    summary = evaluate.summarize(responses, n_boot=200)
    # the protocol stamp: one mark for both pairs (same settings), every field present
    protocol = evaluate.protocol_table(cfg, summary, out)
    assert protocol["protocol"].tolist() == ["A", "A"] and not protocol["yarn"].any()
    assert protocol["k"].tolist() == [4, 4] and protocol["temperature"].iloc[0] == 1.0
    assert (protocol["context_used"] >= summary["max_len"]).all()
    stamp = evaluate.protocol_legend(protocol)
    for part in ("T 1", "top-p 1", "top-k off", "≤ 80 new tokens", "YaRN off", "4 samples/problem"):
        assert part in stamp, part
    assert "</think> required" in stamp
    caption = evaluate.figure_caption(cfg, protocol)
    assert "protocol A" in caption and "% truncated" in caption
    m = evaluate.protocol_metrics(protocol)
    assert m["eval/protocol/max_new_tokens"] == 80 and m["eval/protocol/yarn"] is False
    assert m["eval/stage1/toy/protocol_mark"] == "A"
    # a changed setting gets its own mark
    hot = evaluate.protocol_table(apply_overrides(cfg, {"eval.temperature": 1.2}), summary, out)
    both = evaluate.mark_protocols(pd.concat([protocol, hot], ignore_index=True))
    assert both["protocol"].tolist() == ["A", "A", "B", "B"]
    # paired: stage1 solves one more sample of every problem -> +0.25 on all 6, 6 wins
    paired = evaluate.paired_table(responses)
    r = paired.iloc[0]
    assert (r["a"], r["b"], r["diff"], r["wins"]) == ("base", "stage1", pytest.approx(0.25), 6)
    assert r["p_value"] == pytest.approx(2 / 64) and r["diff_lo"] == pytest.approx(0.25)
    assert evaluate.paired_metrics(paired)["eval/paired/stage1_vs_base/toy/wins"] == 6
    # the grader audit: the authors' rule credits the boxed answers inside unclosed reasoning
    agreement, disagreements = evaluate.grader_audit(responses, cfg)
    assert (agreement["authors_only"] > 0).all() and (agreement["kit_only"] == 0).all()
    assert len(disagreements) == agreement["authors_only"].sum()
    assert set(disagreements["kit_reason"]) == {"no_think_close"}
    assert (disagreements["authors_correct"] == 1).all()
    # which checkpoint: the final one by default; "best" says so and reports the held-out half
    final = evaluate.selection(responses, "final")
    assert (
        final.attrs["chosen"] == "stage1" and "no checkpoint is chosen" in final.attrs["statement"]
    )
    best = evaluate.selection(responses, "best", seed=1)
    assert "SELECTED by evaluation score" in best.attrs["statement"]
    chosen = best[best.reported].iloc[0]
    assert f"toy {chosen.heldout_half:.3f}" in best.attrs["statement"]
    with pytest.raises(ValueError, match="selection"):
        evaluate.selection(responses, "max")
    # the planner from this run as a pilot: measured throughput, mean length of the pilot
    p = evaluate.plan_eval(0.05, run_dir=tmp_path, benchmark="toy")
    assert p["throughput_source"].startswith("measured") and p["device"] == "cpu"
    assert p["mean_response_tokens"] == pytest.approx(
        responses[responses.checkpoint == "stage1"].n_tokens.mean()
    )
    pp = metrics.per_problem(responses[responses.checkpoint == "stage1"])
    assert (
        p["samples_per_problem"] == metrics.plan_samples(0.05, pass_rates=pp)["samples_per_problem"]
    )
    assert "samples per problem" in evaluate.format_plan(p)
    # a pilot whose problems all score alike cannot size the over-problems floor: said, not ±0.0
    same = p | {"problems_floor": 0.0}
    assert "cannot size the over-problems half-width" in evaluate.format_plan(same)
    assert "±0.0" not in evaluate.format_plan(same)
    assert "±2.0 points however many" in evaluate.format_plan(p | {"problems_floor": 0.02})


def test_paper_comparison_uses_the_fixed_problem_interval_and_lists_new_benchmarks():
    s = metrics.summarize(
        pd.concat([_table(HAND, "base", "aime24"), _table(HAND, "final", "aime24")]), n_boot=200
    )
    cmp = paper.paper_comparison(s, "Qwen/Qwen3-4B", skipped=["aime26", "hmmt25"])
    row = cmp.iloc[0]
    assert row["kit_lo"] == pytest.approx(100 * s.iloc[0]["sampling_lo"])
    assert "problems held fixed" in cmp.attrs["interval"] and "YaRN ×1.5" in row["paper_protocol"]
    new = cmp.set_index("benchmark").loc[["aime26", "hmmt25"]]
    assert new["paper"].isna().all()
    assert new["note"].str.contains("no published POLARIS number").all()
    ref = paper.paper_reference()
    assert (ref["aime26"] == "no published POLARIS number").all()
