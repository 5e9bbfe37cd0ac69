"""scripts/gpu_check.py: refuses cleanly without CUDA; on a GPU, the quick run records its numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda(), reason="checks the no-GPU path")
def test_without_cuda_it_records_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert _script().main(["--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
def test_quick_gpu_run_records_time_and_memory(tmp_path):
    from polaris_lib.artifacts import read_json

    out = tmp_path / "gpu_check.json"
    assert _script().main(["--quick", "--out", str(out)]) == 0
    res = read_json(out)
    assert res["device"]["kind"] == "cuda" and res["pipeline"]["status"] == "ok"
    assert res["pipeline"]["wall_s"] > 0 and res["pipeline"]["peak_gpu_mib"] > 0
    assert res["unsloth"]["status"] in ("ok", "failed", "skipped")
