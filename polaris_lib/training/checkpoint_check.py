"""Checks a training checkpoint before TRL loads it, so a corrupt file fails naming itself.

A checkpoint torn by a crash or a full disk (a truncated `model.safetensors` or
`trainer_state.json`, a garbage `optimizer.pt`) would otherwise surface deep inside safetensors,
json or torch (whose message advises `weights_only=False`, the wrong fix). Each check is cheap: a
safetensors header against the file size, a JSON parse, the zip directory of a torch file; no
tensor is read. The error names the file and the way out: delete that checkpoint folder, and the
stage resumes from the previous complete one (or starts over when there is none).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that cannot be read; the message names it and what to do."""


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, shorter than a safetensors header"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            return f"header of {n} bytes but the file has {size} (truncated)"
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"unreadable header ({e})"
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict)
    ]
    need = 8 + n + max(ends, default=0)
    if need > size:
        return f"holds {size} bytes but its tensors need {need} (truncated)"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"not valid JSON ({e}; {path.stat().st_size} bytes)"
    return None


def _torch_problem(path: Path) -> str | None:
    if not zipfile.is_zipfile(path):
        return "not a torch archive (truncated or overwritten)"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        return f"not a torch archive ({e})"
    if not any(name.endswith("data.pkl") for name in names):
        return "a zip file without torch's data.pkl"
    return None


CHECKS = {".safetensors": _safetensors_problem, ".json": _json_problem}
CHECKS |= {".pt": _torch_problem, ".pth": _torch_problem, ".bin": _torch_problem}


def check_checkpoint(folder: str | Path, advice: str | None = None) -> None:
    """Raise CorruptCheckpointError naming the first unreadable file of a checkpoint folder."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        check = CHECKS.get(path.suffix)
        if check is None or not path.is_file():
            continue
        problem = check(path)
        if problem:
            todo = advice or (
                f"delete {folder} to fall back to the previous checkpoint "
                "(the stage then resumes from there, or starts over if there is none)"
            )
            raise CorruptCheckpointError(
                f"corrupt checkpoint file {path}: {problem}. To go on, {todo}."
            )
