"""The run manifest: what ran, with what, where, and how long (reports/<run_id>/manifest.json).

Written by the pipeline runner (`pipeline.py`) after every state change, atomically
(`artifacts.write_json`), so a killed run leaves a manifest that says which step was running.
The report (06) reads it back to show the run's provenance.

Shape (JSON):
    run_id, run_dir, preset, seed, overrides         what was asked for
    seeds                                            every seed the config derives
    git {commit, dirty, branch}, python {...}, packages {name: version}, device {...}, host
    created, updated, status                         pending | running | done | failed
    invocations [{argv, started, ended, status}]     one per `polaris run`
    steps [{step, notebook, stage, status, fingerprint, config, started, ended, elapsed_s,
            peak_rss_gb, retries, attempts [{started, ended, status, error}], output, reason}]
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polaris_lib.artifacts.files import read_json, write_json

MANIFEST = "manifest.json"
STATUSES = ("pending", "running", "done", "failed", "skipped")

# Distribution names whose versions decide whether a result reproduces (optional ones only when
# installed: vllm/unsloth exist on GPU machines only).
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "datasets",
    "peft",
    "accelerate",
    "tokenizers",
    "math-verify",
    "papermill",
    "nbformat",
    "ipykernel",
    "numpy",
    "pandas",
    "matplotlib",
    "vllm",
    "unsloth",
    "unsloth-zoo",
    "bitsandbytes",
)


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds (sortable, timezone explicit)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of `names`; packages that are not installed are left out."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_info(repo: str | Path) -> dict[str, Any]:
    """Commit, branch and dirty flag of `repo` (None values outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=20, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        # tracked files changed since the commit: the result may not reproduce from the SHA alone
        "dirty": None if status is None else bool(status),
    }


def device_info() -> dict[str, Any]:
    """The accelerator (CUDA name and memory) or the CPU, plus host RAM and core count."""
    import psutil

    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kind": "cpu",
    }
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(
                kind="cuda",
                name=props.name,
                memory_gb=round(props.total_memory / 2**30, 1),
                count=torch.cuda.device_count(),
                cuda=torch.version.cuda,
            )
        else:
            info["name"] = info["cpu"]
            info["memory_gb"] = info["ram_gb"]
    except ImportError:
        pass
    return info


def environment(repo: str | Path) -> dict[str, Any]:
    """Everything about the machine and code a result depends on."""
    return {
        "git": git_info(repo),
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": package_versions(),
        "device": device_info(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }


class Manifest:
    """In-memory manifest of one run; `save()` after every change (atomic)."""

    def __init__(self, run_dir: str | Path, data: dict[str, Any]):
        self.run_dir = Path(run_dir)
        self.data = data
        self._t0: dict[str, float] = {}  # wall-clock start of running steps (not serialised)

    @property
    def path(self) -> Path:
        return self.run_dir / MANIFEST

    @classmethod
    def load(cls, run_dir: str | Path) -> Manifest | None:
        """The stored manifest of `run_dir`, or None for a new run."""
        path = Path(run_dir) / MANIFEST
        return cls(run_dir, read_json(path)) if path.exists() else None

    @classmethod
    def create(cls, run_dir: str | Path, **fields: Any) -> Manifest:
        """A fresh manifest (not yet saved)."""
        data = {"created": now(), "status": "pending", "invocations": [], "steps": [], **fields}
        return cls(run_dir, data)

    def save(self) -> Path:
        self.data["updated"] = now()
        return write_json(self.path, self.data)

    def step(self, name: str) -> dict[str, Any] | None:
        """The record of step `name` (folder name), or None."""
        return next((s for s in self.data["steps"] if s["step"] == name), None)

    def set_steps(self, records: list[dict[str, Any]]) -> None:
        """Replace the step list, keeping what is known about steps that are still planned."""
        old = {s["step"]: s for s in self.data["steps"]}
        self.data["steps"] = [{**old.get(r["step"], {}), **r} for r in records]

    def start_attempt(self, name: str) -> dict[str, Any]:
        rec = self.step(name)
        rec["attempts"] = rec.get("attempts", [])
        rec["attempts"].append({"started": now(), "status": "running"})
        rec.update(status="running", started=now(), ended=None, error=None)
        # retries of this step with its current inputs (superseded attempts ran other configs)
        rec["retries"] = sum(not a.get("superseded") for a in rec["attempts"]) - 1
        self._t0[name] = time.time()
        self.save()
        return rec

    def end_attempt(self, name: str, status: str, error: str | None = None, **extra: Any) -> None:
        rec = self.step(name)
        t0 = self._t0.pop(name, None)
        rec.update(status=status, ended=now(), error=error, **extra)
        if t0 is not None:
            rec["elapsed_s"] = round(time.time() - t0, 1)
        if rec.get("attempts"):
            rec["attempts"][-1].update(status=status, ended=now(), error=error)
            if t0 is not None:
                rec["attempts"][-1]["elapsed_s"] = rec["elapsed_s"]
        self.save()

    def mark_interrupted(self) -> list[str]:
        """Steps a killed runner left 'running' become 'failed' (interrupted); returns their names."""
        names = []
        for rec in self.data["steps"]:
            if rec.get("status") == "running":
                rec["status"] = "failed"
                rec["error"] = "interrupted (the runner stopped while this step was running)"
                if rec.get("attempts"):
                    rec["attempts"][-1].update(status="failed", error=rec["error"])
                names.append(rec["step"])
        for inv in self.data["invocations"]:
            if inv.get("status") == "running":
                inv["status"] = "interrupted"
        return names
