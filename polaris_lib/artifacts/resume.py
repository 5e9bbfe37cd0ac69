"""The one resumable store: finished parts of a step's work, each under a fingerprint of its inputs.

A part is one piece of work whose result is a table: one probe temperature, one chunk of the
curation pool, one (checkpoint, benchmark) pair of the evaluation, one (RoPE variant, length) of
the extrapolation. Its parquet is written first and its json (the fingerprint of everything that
determines it, plus whatever the caller records, e.g. timings) last, so the json marks it done; a
part made with other inputs is redone, and a crash loses at most the part in progress.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from polaris_lib.artifacts.files import read_json, write_json, write_parquet


def fingerprint(**what: Any) -> str:
    """Content hash of everything that determines a part (its resume key)."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PartStore:
    """Finished parts in one folder: `<name>.parquet` + `<name>.json` (written last = done)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _files(self, name: str) -> tuple[Path, Path]:
        # Explicit names: Path.with_suffix would read "T0.4000" as stem "T0" + suffix ".4000".
        return self.folder / f"{name}.parquet", self.folder / f"{name}.json"

    def done(self, name: str, key: dict) -> bool:
        """True when part `name` was finished with this key."""
        data, meta = self._files(name)
        if not data.exists() or not meta.exists():
            return False
        return read_json(meta).get("fingerprint") == fingerprint(**key)

    def write(self, name: str, table: pd.DataFrame, key: dict, **info: Any) -> pd.DataFrame:
        """Store a finished part: the table, then its fingerprint and `info` (the 'done' mark)."""
        data, meta = self._files(name)
        write_parquet(data, table)
        write_json(meta, {"fingerprint": fingerprint(**key), **info})
        return table

    def read(self, name: str) -> pd.DataFrame:
        """The table of one finished part."""
        return pd.read_parquet(self._files(name)[0])

    def info(self) -> pd.DataFrame:
        """One row per finished part: its name and the info recorded with it."""
        rows = [
            {"part": meta.stem, **{k: v for k, v in read_json(meta).items() if k != "fingerprint"}}
            for meta in sorted(self.folder.glob("*.json"))
        ]
        return pd.DataFrame(rows)
