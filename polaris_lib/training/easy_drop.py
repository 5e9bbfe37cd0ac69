"""Between-stage easy drop (RECIPE.md §2): problems the policy already solves leave the next stage.

After a stage, drop problems whose mean reward over the stage's reward log is strictly above the
threshold (paper: 0.9), using the pre-rescue pass rate when logged (a rescued response is not the
policy's own success); problems the log never saw are kept. Used by stage.drop_easy and, for
verl runs, verl_reward.easy_drop_from_log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _missing(v) -> bool:
    """None or NaN (a DataFrame log fills absent fields with NaN)."""
    return v is None or (isinstance(v, float) and np.isnan(v))


def _record_rate(rec: dict, i: int) -> float | None:
    """One log record's pass rate: pre-rescue if logged, else the mean of its graded rewards.

    None when the record holds rewards but none graded (unparseable gold): it is not counted.
    """
    if not _missing(rec.get("pass_rate_pre_rescue")):
        return float(rec["pass_rate_pre_rescue"])
    rewards = rec.get("rewards")
    if not _missing(rewards) and len(rewards):
        graded = [float(r) for r in rewards if not _missing(r)]
        return float(np.mean(graded)) if graded else None
    for k in ("mean_reward", "reward"):
        if not _missing(rec.get(k)):
            return float(rec[k])
    raise ValueError(
        f"reward log record {i} (problem {rec.get('problem_id')!r}) has no pass_rate_pre_rescue, "
        "rewards or mean_reward"
    )


def easy_drop(
    reward_log, problems: pd.DataFrame, threshold: float = 0.9
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, dropped): drop problems whose mean logged pass rate over the stage is > threshold.

    `reward_log`: a DataFrame or list of dicts, one record per prompt per step, with problem_id and
    pass_rate_pre_rescue or rewards (list) or mean_reward. Never-seen problems are kept.
    `dropped` lists problem_id, mean_reward and count (records averaged).
    """
    records = reward_log.to_dict("records") if isinstance(reward_log, pd.DataFrame) else reward_log
    rows = []
    for i, rec in enumerate(records):
        if _missing(rec.get("problem_id")):
            raise ValueError(f"reward log record {i} has no problem_id: {rec}")
        rows.append((rec["problem_id"], _record_rate(rec, i)))
    log_df = pd.DataFrame(rows, columns=["problem_id", "rate"]).dropna(subset=["rate"])
    unknown = sorted(set(log_df.problem_id) - set(problems.problem_id))
    if unknown:
        raise ValueError(
            f"reward log names {len(unknown)} problem(s) not in the stage's data: {unknown[:5]}"
        )
    stats = log_df.groupby("problem_id").rate.agg(mean_reward="mean", count="size").reset_index()
    easy = set(stats.problem_id[stats.mean_reward > threshold])
    table = problems.drop(columns=["stage_mean_reward", "stage_count"], errors="ignore").merge(
        stats.rename(columns={"mean_reward": "stage_mean_reward", "count": "stage_count"}),
        on="problem_id",
        how="left",
    )
    table["stage_count"] = table.stage_count.fillna(0).astype(int)
    kept = table[~table.problem_id.isin(easy)].reset_index(drop=True)
    dropped = stats[stats.problem_id.isin(easy)].sort_values("mean_reward", ascending=False)
    return kept, dropped.reset_index(drop=True)
