"""Shared pytest fixtures: local data, the toy world, and papermill on the project's kernel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared local data ($POLARIS_DATA_DIR, else ../shared/data); skips when absent."""
    path = Path(os.environ.get("POLARIS_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"local data directory {path} not found (set POLARIS_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def toy_world_path() -> Path:
    """The default toy world (ToyConfig()), built once into the shared cache and reused (slow once)."""
    from polaris_lib.config.sections import ToyConfig
    from polaris_lib.toy.build import build_toy_world

    return build_toy_world(ToyConfig(), progress=False)


@pytest.fixture(scope="session")
def project_kernel() -> None:
    """Skip unless pytest runs from the project's .venv, whose Python is the `python3` kernel."""
    if Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve():
        pytest.skip("notebook tests run from the project's .venv (its kernel)")


@pytest.fixture(scope="session")
def run_notebook(project_kernel):
    """run_notebook(name, out, **parameters): papermill-execute notebooks/<name> from the repo root."""
    import papermill as pm

    def run(name: str, out: Path, **params) -> Path:
        pm.execute_notebook(
            str(REPO_ROOT / "notebooks" / name),
            str(out),
            parameters=params,
            cwd=str(REPO_ROOT),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
        return Path(out)

    return run


@pytest.fixture(scope="session")
def assert_figures_shown():
    """assert_figures_shown(executed_notebook): every `show(fig, ...)` cell displays a PNG, and no
    cell prints a figure as `<Figure size ...>` text (what a user stepping through would see)."""
    import re

    import nbformat

    def check(path: Path) -> int:
        nb = nbformat.read(str(path), as_version=4)
        shown = 0
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            texts = [
                o.get("text", "")
                if o.output_type == "stream"
                else o.get("data", {}).get("text/plain", "")
                for o in cell.outputs
            ]
            assert not any("<Figure size" in t for t in texts), f"{path.name} cell {i}: {texts}"
            if re.search(r"\bshow\(fig\b", cell.source):
                pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
                assert pngs, f"{path.name} cell {i} saves a figure but shows none"
                shown += len(pngs)
        return shown

    return check
