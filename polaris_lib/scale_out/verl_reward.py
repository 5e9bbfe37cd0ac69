"""The kit's reward inside verl (RECIPE.md §8), plus the per-prompt log the easy-drop needs (§2).

verl loads this file by path (``reward.custom_reward_function.path``) and calls
``compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)`` once per
rollout. The grade is the kit's own (`polaris_lib.grading.grader.grade`), so verl trains on exactly the
reward the kit trains on. verl keeps no per-problem reward history, so when ``log_dir`` is given
each call appends ``{"problem_id", "reward"}`` to ``<log_dir>/rewards-<host>-<pid>.jsonl`` (one
file per process: no interleaved writes); `easy_drop_from_log` below reads them at the stage
boundary. On several nodes ``log_dir`` must be on a shared filesystem (or the files
copied together before the easy-drop step).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polaris_lib import artifacts
from polaris_lib.grading.grader import grade
from polaris_lib.training import easy_drop


def _log(log_dir: str, record: dict) -> None:
    """Append one JSON line to this process's file; flushed so a crash loses at most one line."""
    path = Path(log_dir) / f"rewards-{socket.gethostname()}-{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def compute_score(
    data_source,
    solution_str: str,
    ground_truth,
    extra_info: dict | None = None,
    *,
    thinking: bool = True,
    log_dir: str | None = None,
    timeout_s: float = 5.0,
    **_ignored,
) -> dict:
    """verl reward: {"score": 1.0 | 0.0, "acc": same}; logs the rollout's problem_id when asked.

    An unparseable gold scores 0.0 here (verl needs a number) and is logged with reward None,
    which the easy-drop treats as 0 (the kit's own trainer does the same).
    """

    score = grade(solution_str, ground_truth, thinking=thinking, timeout_s=timeout_s)
    if log_dir:
        pid = (extra_info or {}).get("problem_id")
        if pid is None:
            raise KeyError(
                "extra_info has no problem_id: export the data with polaris_lib.data.catalog.to_verl "
                f"(data_source={data_source!r}, extra_info keys={sorted(extra_info or {})})"
            )
        _log(log_dir, {"problem_id": str(pid), "reward": None if score is None else float(score)})
    value = float(score or 0)
    return {"score": value, "acc": value}


def easy_drop_from_log(
    log_dir: str | Path, data_path: str | Path, out_path: str | Path, threshold: float = 0.9
) -> dict[str, int]:
    """Stage k's verl parquet minus its easy problems (mean logged reward > threshold) -> stage k+1.

    Reads the per-rollout lines `polaris_lib.scale_out.verl_reward` wrote (None rewards count as 0) and
    applies the kit's rule (`easy_drop.easy_drop`); verl rows are copied unchanged, ids included.
    """

    files = sorted(Path(log_dir).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(
            f"no reward logs in {log_dir}: the stage ran without polaris_lib.scale_out.verl_reward's "
            "log_dir (reward.custom_reward_function.reward_kwargs.log_dir)"
        )
    records = [r for f in files for r in artifacts.read_jsonl(f)]
    for r in records:
        r["reward"] = 0.0 if r.get("reward") is None else float(r["reward"])
    table = pq.read_table(data_path)  # pyarrow, not pandas: nested verl columns stay as they are
    ids = pc.struct_field(table["extra_info"], "problem_id").to_pylist()
    kept, dropped = easy_drop(records, pd.DataFrame({"problem_id": ids}), threshold)
    keep = set(kept.problem_id)
    out = table.filter(pa.array([i in keep for i in ids]))
    _write_arrow(out, Path(out_path))
    artifacts.write_parquet(
        Path(out_path).with_name(Path(out_path).stem + "_easy_dropped.parquet"), dropped
    )
    return {"kept": out.num_rows, "dropped": len(dropped), "log_records": len(records)}


def _write_arrow(table: pa.Table, path: Path) -> None:
    """Atomic parquet write of an arrow table (artifacts' one writer: no partial file, no .tmp)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    artifacts.write_bytes(path, buf.getvalue().to_pybytes())
