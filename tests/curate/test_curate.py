"""Curation: pass rates (resumable chunks), the n/n drop, buckets and the sanity views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polaris_lib import curate
from polaris_lib.grading.grader import GradeResult
from polaris_lib.policy.rollouts import grade_samples


class _Grader:
    """Exact match of the whole text against the first gold form (a stand-in for math-verify)."""

    def grade_batch_results(self, texts, golds):
        return [
            GradeResult(int(t == f"\\boxed{{{g[0]}}}"), "fake")
            for t, g in zip(texts, golds, strict=True)
        ]


def _pool(m=10):
    return pd.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(m)],
            "problem": [f"q{i}" for i in range(m)],
            "answer": [str(i) for i in range(m)],
            "answers": [[str(i)] for i in range(m)],
            "source": "test",
            "level": [1 + i % 5 for i in range(m)],
        }
    )


def _sampler(calls, n=8, crash_after=None):
    """Problem p{i} is solved in (i mod (n+1)) of n samples."""

    def fn(chunk, c):
        if crash_after is not None and len(calls) >= crash_after:
            raise KeyboardInterrupt("simulated crash")
        calls.append(c)
        rows = []
        for pid, ans in zip(chunk.problem_id, chunk.answer, strict=True):
            k = int(ans) % (n + 1)
            for j in range(n):
                text = f"\\boxed{{{ans if j < k else 'x'}}}"
                rows.append(
                    dict(
                        problem_id=pid,
                        sample_idx=j,
                        text=text,
                        n_tokens=4 + j,
                        finished=True,
                        truncated=j == n - 1,
                    )
                )
        return grade_samples(pd.DataFrame(rows), chunk, _Grader())

    return fn


def _estimate(tmp_path, sampler, on_chunk=None, pool=None):
    return curate.estimate_pass_rates(
        sampler,
        _pool() if pool is None else pool,
        out=tmp_path,
        checkpoint_every=3,
        key={"m": "x"},
        on_chunk=on_chunk,
        progress=False,
    )


def test_pass_rates_are_k_over_n_in_pool_order(tmp_path):
    rates = _estimate(tmp_path, _sampler([]))
    assert rates.problem_id.tolist() == [f"p{i}" for i in range(10)]
    assert rates.k.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
    assert rates.pass_rate.tolist() == pytest.approx([k / 8 for k in rates.k])
    assert rates.truncation_rate.tolist() == pytest.approx([1 / 8] * 10)
    assert rates.mean_tokens.tolist() == pytest.approx([7.5] * 10)


def test_crash_at_60_percent_resumes_at_60_percent(tmp_path):
    calls, progress = [], []
    # 10 problems in chunks of 3 -> 4 chunks; crash while sampling the 3rd chunk (after 2 done).
    with pytest.raises(KeyboardInterrupt):
        _estimate(tmp_path, _sampler(calls, crash_after=2), lambda d, t: progress.append((d, t)))
    assert calls == [0, 1] and progress == [(1, 4), (2, 4)]
    rates = _estimate(tmp_path, _sampler(calls))
    assert calls == [0, 1, 2, 3]  # chunks 0 and 1 were read back, not resampled
    assert rates.k.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0]
    # A different pool order changes chunk contents: those chunks are redone, not mixed up.
    _estimate(tmp_path, _sampler(calls), pool=_pool().iloc[::-1].reset_index(drop=True))
    assert calls[4:] == [0, 1, 2, 3]


def test_duplicate_ids_are_rejected(tmp_path):
    pool = pd.concat([_pool(2), _pool(2)], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate problem ids.*p0"):
        _estimate(tmp_path, _sampler([]), pool=pool)


def test_solved_all_dropped_solved_none_kept_and_buckets(tmp_path):
    pool = _pool()
    rates = _estimate(tmp_path, _sampler([]))
    curated, dropped = curate.select(pool, rates)
    assert dropped.problem_id.tolist() == ["p8"]  # 8/8
    assert {"p0", "p9"} <= set(curated.problem_id)  # 0/8 kept
    assert len(curated) == 9 and {"level", "answers", "pass_rate", "k"} <= set(curated.columns)
    b = curate.bucket_table(rates, 8)
    assert b.bucket.tolist()[0] == "0/8" and b.problems.tolist() == [2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert b.dropped.tolist() == [0] * 8 + [1] and b.kept.sum() == 9
    kept_all, none = curate.select(pool, rates, drop_solved_all=False)
    assert len(kept_all) == 10 and none.empty
    assert curate.bucket_table(rates, 8, drop_solved_all=False).dropped.sum() == 0
    with pytest.raises(ValueError, match="not in the pool"):
        curate.select(pool.iloc[:5], rates)


def test_by_level_and_reference_difficulty(tmp_path):
    pool = _pool()
    rates = _estimate(tmp_path, _sampler([]))
    lv = curate.by_level(rates, pool)
    assert lv.level.tolist() == [1, 2, 3, 4, 5] and lv.problems.tolist() == [2] * 5
    assert lv.pass_rate.tolist() == pytest.approx([(0 + 5) / 16, 7 / 16, 9 / 16, 11 / 16, 4 / 16])
    assert curate.parse_reference_difficulty("3/8") == 0.375
    assert curate.parse_reference_difficulty(6) == 0.75
    assert curate.parse_reference_difficulty(0.5) == 0.5
    assert np.isnan(curate.parse_reference_difficulty(None))
    cmp = curate.compare_difficulty(rates, pool.assign(difficulty=["8/8"] * 10))
    assert cmp.reference_pass_rate.tolist() == [1.0] * 10
    with pytest.raises(KeyError, match="difficulty"):
        curate.compare_difficulty(rates, pool)


def test_curation_figures_render(tmp_path):
    from polaris_lib import artifacts
    from polaris_lib.curate import figures as curate_plots

    pool = _pool().assign(difficulty=["1/8", "8/8"] * 5)
    rates = _estimate(tmp_path, _sampler([]), pool=pool)
    fig = curate_plots.pass_rate_histogram(
        curate.bucket_table(rates, 8), caption_text="t", temperature=1.0
    )
    assert artifacts.save_figure(fig, tmp_path / "h.png").stat().st_size > 5_000
    views = curate.sanity_tables("polaris53k", rates, pool)
    assert set(views) == {"level", "reference"}
    for name, view in views.items():
        fig = curate_plots.sanity_figure(name, view, caption_text="t")
        path = artifacts.save_figure(fig, tmp_path / curate.sanity_figure_name(name))
        assert path.stat().st_size > 5_000
    assert set(curate.sanity_tables("toy", rates, pool)) == {"level", "difficulty"}


# ----------------------------------------------------------------------------- real pools
@pytest.mark.slow
def test_math500_and_gsm8k_pools_run_through_the_toy_policy(data_dir, monkeypatch, tmp_path):
    """Exercises the local-pool path end to end; the toy policy scores ~0 on real math."""
    from polaris_lib.config.overrides import apply_overrides
    from polaris_lib.config.presets import get_preset
    from polaris_lib.policy.load import load_policy

    monkeypatch.setenv("POLARIS_DATA_DIR", str(data_dir))
    base = {"curation.samples_per_problem": 2, "curation.max_new_tokens": 8}
    run = apply_overrides(get_preset("tiny"), {**base, "curation.pool": "math500"})
    model, tok = load_policy(run)
    pool = curate.pool_problems(run)
    assert len(pool) == 256 and {"level", "subject"} <= set(pool.columns)  # tiny caps the pool
    few = pool.loc[pool.problem.str.len().nsmallest(5).index].reset_index(drop=True)
    rates = curate.run_curation(model, tok, run, tmp_path / "m", few, 1.0, progress=False)
    assert rates.n.tolist() == [2] * 5 and rates.pass_rate.between(0, 1).all()
    views = curate.sanity_tables("math500", rates, few)
    assert set(views) == {"level"} and views["level"].problems.sum() == 5

    run = apply_overrides(get_preset("tiny"), {**base, "curation.pool": "gsm8k"})
    gsm = curate.pool_problems(run)
    few = gsm.loc[gsm.problem.str.len().nsmallest(2).index].reset_index(drop=True)
    rates = curate.run_curation(model, tok, run, tmp_path / "g", few, 1.0, progress=False)
    curated, _ = curate.select(few, rates)
    assert len(curated) == 2 and curated.answer.str.fullmatch(r"-?\d+").all()


def test_polaris53k_offline_fails_clearly(monkeypatch):
    from polaris_lib.config.overrides import apply_overrides
    from polaris_lib.config.presets import get_preset
    from polaris_lib.data import DataUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    run = apply_overrides(get_preset("tiny"), {"curation.pool": "polaris53k"})
    with pytest.raises(DataUnavailableError, match="Polaris-Dataset-53K"):
        curate.pool_problems(run)
