"""The verl RL parquet format the POLARIS repository uses (RECIPE.md §7).

A verl row is ``prompt`` (chat messages whose user turn already ends with the instruction
suffix), ``reward_model`` ({"style": "rule", "ground_truth": str | float | list}), ``extra_info``
({"index": int, ...}; aime25 has ``id`` instead) and ``data_source``. Reading strips the suffix
so the kit stores bare problems; every prompt is rebuilt through :func:`build_messages`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from polaris_lib.artifacts.files import write_arrow
from polaris_lib.data.prompt import INSTRUCTION_SUFFIX, build_messages, strip_suffix

# extra_info keys that carry identity rather than extra columns.
_ID_KEYS = ("problem_id", "index", "id", "source", "derived_columns")
# Top-level verl columns that map to the schema (the rest are kept as extra columns).
_VERL_COLUMNS = ("prompt", "reward_model", "extra_info")
# Extra columns written at the top level of a verl row rather than inside extra_info.
_TOP_LEVEL_EXTRAS = ("data_source", "ability")


def _as_list(value) -> list | None:
    """Parquet gives numpy arrays for list cells; turn them into lists, leave scalars alone."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return list(value)
    return None


def _user_text(prompt) -> str | None:
    """The content of the last user turn of a chat-message list, or None when there is none."""
    messages = _as_list(prompt)
    if messages is None:
        return prompt if isinstance(prompt, str) else None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message.get("content")
    return None


def read_verl(raw: pd.DataFrame, *, source: str | None, default_source: str) -> pd.DataFrame:
    """verl rows -> problem_id, problem, answer (raw gold), source, extra columns.

    The answer is left raw (str, float or list): the caller normalises it. source is the given
    one, else extra_info.source (written by to_verl), else default_source (the file stem;
    verl's data_source is often empty, so it is kept as an extra column, not used). problem_id
    is extra_info.problem_id (written by to_verl), else "<source>/<index or id>", else the row.
    """
    missing = [c for c in _VERL_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(
            f"not a verl RL parquet: missing column(s) {missing}; has {list(raw.columns)}"
        )
    rows = []
    for pos, rec in enumerate(raw.to_dict("records")):
        info = rec.get("extra_info") if isinstance(rec.get("extra_info"), dict) else {}
        reward = rec.get("reward_model") if isinstance(rec.get("reward_model"), dict) else {}
        src = source or info.get("source") or default_source
        original = info.get("index", info.get("id", pos))
        text = _user_text(rec.get("prompt"))
        row = {
            "problem_id": info.get("problem_id") or f"{src}/{original}",
            "problem": strip_suffix(text) if isinstance(text, str) else text,
            "answer": reward.get("ground_truth"),
            "source": src,
        }
        # Top-level fields to_verl filled in itself (not columns of the exported frame) stay out.
        derived = set(_as_list(info.get("derived_columns")) or ())
        row.update({k: v for k, v in rec.items() if k not in _VERL_COLUMNS and k not in derived})
        row.update({k: v for k, v in info.items() if k not in _ID_KEYS})
        rows.append(row)
    return pd.DataFrame(
        rows, columns=None if rows else ["problem_id", "problem", "answer", "source"]
    )


def _ground_truth(answers, answer, as_list: bool):
    """The gold of one row in verl form: a list when the frame has alternatives, else a str."""
    alts = list(answers) if _as_list(answers) is not None else [answer]
    return alts if as_list else alts[0]


def _cell(value):
    """Plain Python values for pyarrow (numpy scalars and arrays are converted)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_verl(df: pd.DataFrame, path: str | os.PathLike, suffix: str = INSTRUCTION_SUFFIX) -> Path:
    """Write a schema frame as a verl RL parquet (atomically) and return its path.

    The suffix is applied once; ground_truth is a str, or a list for every row when any row has
    several accepted answers (a parquet column has one type); extra columns go to extra_info.
    """
    path = Path(path)
    has_alts = "answers" in df.columns and any(
        len(a) > 1 for a in df["answers"] if _as_list(a) is not None
    )
    extras = [
        c for c in df.columns if c not in ("problem_id", "problem", "answer", "answers", "source")
    ]
    derived = [c for c in _TOP_LEVEL_EXTRAS if c not in df.columns]
    records = []
    for pos, rec in enumerate(df.to_dict("records")):
        info = {"index": pos, "problem_id": rec["problem_id"], "source": rec["source"]}
        info["derived_columns"] = derived
        info.update({c: _cell(rec[c]) for c in extras if c not in _TOP_LEVEL_EXTRAS})
        gold = _ground_truth(rec.get("answers"), rec["answer"], has_alts)
        records.append(
            {
                "data_source": rec.get("data_source", rec["source"]),
                "prompt": build_messages(rec["problem"], suffix),
                "ability": rec.get("ability", "math"),
                "reward_model": {"style": "rule", "ground_truth": gold},
                "extra_info": info,
            }
        )
    return write_arrow(path, pa.Table.from_pylist(records))
