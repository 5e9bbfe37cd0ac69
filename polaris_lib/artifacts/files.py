"""Files of the run folder: the one atomic writer and the readers every step uses.

Every write is atomic (temporary file + os.replace), so a crash never leaves half a file that a
resumed run would mistake for a finished one. Append-only logs (jsonl) flush and fsync each line.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """The one atomic writer: temporary file in the same folder, fsync, rename over `path`.

    A crash or a full disk leaves either the old file or the new one, never half of one, and no
    temporary file behind. `mode` sets the permissions (mkstemp makes files owner-only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write UTF-8 text atomically (see write_bytes)."""
    return write_bytes(path, text.encode("utf-8"), mode)


def _jsonable(obj: Any) -> Any:
    """numpy scalars, paths and NaN made JSON-safe (NaN -> null: JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (sorted keys, indented: diffs stay readable)."""
    path = Path(path)
    write_bytes(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True).encode())
    return path


def read_json(path: str | Path) -> Any:
    """Read a JSON artifact."""
    return json.loads(Path(path).read_text())


def update_metrics(step: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge `metrics` (slash-spaced keys, e.g. "probe/chosen_temperature") into metrics.json."""
    path = Path(step) / "metrics.json"
    current = read_json(path) if path.exists() else {}
    current.update(metrics)
    write_json(path, current)
    return current


def write_config(step: str | Path, cfg: Any, **extra: Any) -> Path:
    """Record the resolved config (a RunConfig or dict) the step ran with, plus extras."""
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return write_json(Path(step) / "config.json", {**d, **extra})


def write_parquet(path: str | Path, df) -> Path:
    """Write a tidy table atomically."""
    path = Path(path)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes(path, buf.getvalue())
    return path


def write_arrow(path: str | Path, table) -> Path:
    """Write a pyarrow Table as parquet atomically (keeps arrow types a pandas round trip loses)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return write_bytes(path, buf.getvalue())


def read_parquet(path: str | Path):
    """Read a tidy table."""
    import pandas as pd

    return pd.read_parquet(path)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib Figure as PNG atomically (the report embeds these files)."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buf.getvalue())
    return path


def show(fig, path: str | Path, dpi: int = 120) -> None:
    """Save a figure into the run folder (save_figure), then show that PNG in the notebook.

    The one way notebooks display figures: it works whatever matplotlib backend the kernel has
    (JupyterLab's inline one, or Agg under the batch runner), shows each figure exactly once, and
    closes it so pyplot holds no open figures across cells. Outside IPython it only saves.
    """
    path = save_figure(fig, path, dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(data=path.read_bytes(), format="png"))


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append records to a jsonl log, one line each, flushed and fsynced (crash-safe)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(_jsonable(r), sort_keys=True) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a jsonl log, ignoring a torn last line left by a crash mid-write."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # torn final line from a crash: the step it belonged to is redone
            raise ValueError(
                f"{path}: line {i + 1} of {len(lines)} is not valid JSON ({e}); only a torn last "
                f"line is expected after a crash. Repair or delete line {i + 1} (e.g. "
                f"`sed -i '{i + 1}d' {path}`) and run again"
            ) from None
    return out


def rewrite_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Atomically replace a jsonl log (used to trim steps after a resume point)."""
    data = "".join(json.dumps(_jsonable(r), sort_keys=True) + "\n" for r in records)
    write_bytes(Path(path), data.encode())
