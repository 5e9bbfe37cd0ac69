"""The per-prompt reward log (RECIPE.md §2 "between stages"): one jsonl line per group per step.

Keyed by the stable `problem_id`; `pass_rate_pre_rescue` is what the > 0.9 easy-drop reads
(easy_drop.easy_drop), so a rescued response never makes a problem look solved. Written by the main
process only, appended and fsynced per step (artifacts.append_jsonl); a resumed run first trims
the records of steps after its checkpoint, so no step is duplicated or lost.

Record fields: step (1-based optimizer step), problem_id, rewards (pre-rescue, one per rollout,
null = unscorable), pass_rate_pre_rescue, n, rescued, kind (all0/all1/mixed after rescue, before
substitution), substituted (the group's rows were overwritten by a donor's copy), copies (times
the group was used as a donor), action (substitute/skip/train_mixed/none for the whole step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polaris_lib import artifacts
from polaris_lib.training.substitution import MIXED, SubstitutionResult


def group_records(
    step: int,
    problem_ids: list[str],
    pre_rewards: np.ndarray,
    group_size: int,
    res: SubstitutionResult,
    rescued_rows: dict[int, str],
) -> list[dict]:
    """One record per group of a (global, group-contiguous) generation batch."""
    groups = np.asarray(pre_rewards, dtype=float).reshape(-1, group_size)
    rescued_groups = {row // group_size for row in rescued_rows}
    copies = np.bincount(res.donors, minlength=len(res.donors)) - 1
    return [
        dict(
            step=int(step),
            problem_id=problem_ids[g * group_size],
            rewards=[None if np.isnan(x) else float(x) for x in groups[g]],
            pass_rate_pre_rescue=float(np.nanmean(groups[g]))
            if np.isfinite(groups[g]).any()
            else None,
            n=group_size,
            rescued=g in rescued_groups,
            kind=str(res.kinds[g]),
            substituted=bool(res.donors[g] != g),
            copies=int(copies[g]) if res.kinds[g] == MIXED else 0,
            action=res.action,
        )
        for g in range(groups.shape[0])
    ]


def trim_reward_log(path: str | Path, last_step: int) -> int:
    """Drop records of steps after `last_step` (a resumed run redoes them); returns records kept."""
    path = Path(path)
    if not path.exists():
        return 0
    records = artifacts.read_jsonl(path)
    kept = [r for r in records if int(r["step"]) <= last_step]
    if len(kept) != len(records) or path.read_bytes()[-1:] not in (b"", b"\n"):
        artifacts.rewrite_jsonl(path, kept)
    return len(kept)
