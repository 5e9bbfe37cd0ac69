"""Rollout rescue (RECIPE.md §4): a per-problem buffer of the most recent correct response.

When a later visit to a problem gives 0/n, one failed rollout is swapped for the buffered correct
one before rewards are computed, so the group has a positive example and a non-zero advantage.
The blog describes this; the authors' released code does not implement it.

The buffer holds, per stable `problem_id`, the completion token ids (eos included) and the
decoded completion exactly as the trainer produced them, so a rescued row is graded through the
normal reward path with no re-decoding. It is plain data (JSON) saved with every checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from polaris_lib import artifacts

RESCUE_FILE = "polaris_rescue.json"
"""File name of the buffer inside a checkpoint folder."""


class RescueBuffer:
    """problem_id -> {"ids": completion token ids, "completion": decoded completion}."""

    def __init__(self, entries: dict[str, dict[str, Any]] | None = None) -> None:
        self.entries: dict[str, dict[str, Any]] = dict(entries or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, problem_id: str) -> bool:
        return problem_id in self.entries

    def get(self, problem_id: str) -> dict[str, Any] | None:
        """The buffered entry of a problem, or None."""
        return self.entries.get(problem_id)

    def update(self, records: list[tuple[str, list[int], Any]]) -> int:
        """Store (problem_id, ids, completion) records; a later record for a problem wins."""
        for pid, ids, completion in records:
            self.entries[str(pid)] = {"ids": [int(t) for t in ids], "completion": completion}
        return len(records)

    def digest(self) -> str:
        """Short content hash (ranks of a multi-process run compare buffers with it)."""
        blob = json.dumps(self.entries, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write the buffer atomically (a crash never leaves half a file)."""
        return artifacts.write_text(path, json.dumps(self.entries))

    @classmethod
    def load(cls, path: str | Path) -> RescueBuffer:
        """Read a saved buffer; a missing file gives an empty buffer."""
        path = Path(path)
        if path.is_dir():
            path = path / RESCUE_FILE
        if not path.exists():
            return cls()
        return cls(json.loads(path.read_text(encoding="utf-8")))


def latest_correct_rows(rewards: np.ndarray, group_size: int) -> list[int]:
    """Global row of the last correct (reward >= 1) rollout of each group that has one.

    >>> latest_correct_rows(np.array([1, 0, 1, 0, 0, 0]), 2)
    [0, 4]
    """
    r = np.asarray(rewards, dtype=float).reshape(-1, group_size)
    rows = []
    for g, group in enumerate(r):
        ok = np.flatnonzero(np.nan_to_num(group, nan=0.0) >= 1.0)
        if len(ok):
            rows.append(g * group_size + int(ok[-1]))
    return rows


def plan_rescue(
    rewards: np.ndarray,
    problem_ids: list[str],
    group_size: int,
    buffer: RescueBuffer,
    max_completion_length: int | None = None,
) -> dict[int, str]:
    """{global row to replace: problem_id} for every all-0 group with a buffered response.

    Only groups whose rewards are all exactly 0 qualify (an unscorable NaN row disqualifies:
    the rescued row could not be graded either). The first row of the group is replaced (all
    rollouts of a group are exchangeable); an entry longer than the stage's completion budget is
    not used.

    >>> buf = RescueBuffer({"p1": {"ids": [5, 2], "completion": "x"}})
    >>> plan_rescue(np.array([0, 0, 0, 0, 1, 0]), ["p0", "p0", "p1", "p1", "p2", "p2"], 2, buf)
    {2: 'p1'}
    """
    r = np.asarray(rewards, dtype=float).reshape(-1, group_size)
    plan = {}
    for g, group in enumerate(r):
        pid = problem_ids[g * group_size]
        entry = buffer.get(pid)
        if entry is None or not np.all(group == 0.0):
            continue
        if max_completion_length is not None and len(entry["ids"]) > max_completion_length:
            continue
        plan[g * group_size] = pid
    return plan
