"""The between-stage rule: drop problems whose mean logged pass rate over the stage is > 0.9."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polaris_lib.training.easy_drop import easy_drop


def _stage_problems():
    return pd.DataFrame({"problem_id": ["a", "b", "c", "d", "e"], "problem": list("ABCDE")})


def test_easy_drop_hand_made_log():
    log = [
        # a: 1.0, 0.875 and 1.0 (2 graded of 4) -> mean 0.958 > 0.9: dropped
        {"step": 1, "problem_id": "a", "rewards": [1] * 8},
        {"step": 5, "problem_id": "a", "rewards": [1] * 7 + [0]},
        # b: exactly 0.9 is not above the threshold: kept
        {"step": 2, "problem_id": "b", "rewards": [1] * 8},
        {"step": 6, "problem_id": "b", "rewards": [1] * 6 + [0, 0]},
        {"step": 9, "problem_id": "b", "rewards": [1, 1, 1, 1, 1, 1, 1, 0]},
        {"step": 12, "problem_id": "b", "rewards": [1, 1, 1, 1, 1, 1, 1, 1], "x": 0},
        {"step": 15, "problem_id": "b", "rewards": [1, 1, 1, 1, 1, 1, 0, 1]},
        # c: rescue made it look solved, but its pre-rescue rate is what counts: kept
        {"step": 3, "problem_id": "c", "rewards": [1] * 8, "pass_rate_pre_rescue": 0.5},
        # d: mean_reward form, 0.95: dropped
        {"step": 4, "problem_id": "d", "mean_reward": 0.95},
        # d: ungraded rewards (None) are ignored, not counted as failures
        {"step": 7, "problem_id": "d", "rewards": [None] * 8, "pass_rate_pre_rescue": None},
        {"step": 8, "problem_id": "a", "rewards": [1, 1, None, None], "pass_rate_pre_rescue": None},
    ]  # e: never seen -> kept
    kept, dropped = easy_drop(log, _stage_problems(), threshold=0.9)
    assert dropped.problem_id.tolist() == ["a", "d"]  # most solved first
    assert dropped.mean_reward.tolist() == pytest.approx([(1 + 0.875 + 1) / 3, 0.95])
    assert dropped["count"].tolist() == [3, 1]
    assert kept.problem_id.tolist() == ["b", "c", "e"]
    assert kept.stage_mean_reward.tolist()[:2] == pytest.approx([0.9, 0.5])
    assert np.isnan(kept.stage_mean_reward.iloc[2]) and kept.stage_count.tolist() == [5, 1, 0]
    # Same answer from a DataFrame log; a lower threshold drops more.
    kept2, dropped2 = easy_drop(pd.DataFrame(log), _stage_problems(), threshold=0.5)
    assert dropped2.problem_id.tolist() == ["a", "d", "b"] and kept2.problem_id.tolist() == [
        "c",
        "e",
    ]


def test_easy_drop_bad_logs_name_the_record():
    with pytest.raises(ValueError, match="record 0 has no problem_id"):
        easy_drop([{"rewards": [1]}], _stage_problems())
    with pytest.raises(ValueError, match="record 1 .*'b'.* no pass_rate_pre_rescue"):
        easy_drop([{"problem_id": "a", "rewards": [1]}, {"problem_id": "b"}], _stage_problems())
    with pytest.raises(ValueError, match="not in the stage's data: \\['zz'\\]"):
        easy_drop([{"problem_id": "zz", "rewards": [1]}], _stage_problems())


def test_easy_drop_empty_log_keeps_everything():
    kept, dropped = easy_drop([], _stage_problems())
    assert len(kept) == 5 and dropped.empty
