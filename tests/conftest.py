"""Shared pytest fixtures (keep generic: other modules add theirs here)."""

from __future__ import annotations

import os
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
