"""The GPU lock agrees with pyproject.toml: same library versions as the CPU set, gpu extra locked."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "locks/gpu-requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _overrides() -> dict[str, Requirement]:
    lines = (ROOT / "locks/gpu-overrides.txt").read_text().splitlines()
    reqs = [Requirement(x.split("#")[0].strip()) for x in lines if x.split("#")[0].strip()]
    return {canonicalize_name(r.name): r for r in reqs}


def test_lock_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock, overrides = _lock(), _overrides()
    gpu = {
        canonicalize_name(Requirement(r).name): Requirement(r)
        for r in project["optional-dependencies"]["gpu"]
    }
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        want = overrides.get(name) or gpu.get(name) or req
        assert name in lock, f"{name} missing from the GPU lock"
        assert want.specifier.contains(lock[name], prereleases=True), (name, lock[name], str(want))
    for name, req in gpu.items():  # the gpu extra is locked exactly
        assert req.specifier.contains(lock[name]), (name, lock[name], str(req))
    for lib in (
        "trl",
        "transformers",
        "datasets",
        "peft",
        "accelerate",
    ):  # same code on CPU and GPU
        cpu = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == lib)
        assert str(cpu.specifier) == f"=={lock[lib]}", lib


def test_resolution_record_and_lock_agree():
    res = json.loads((ROOT / "locks/gpu-resolution.json").read_text())
    assert {canonicalize_name(k): v for k, v in res["resolved"].items()} == _lock()
    assert re.fullmatch(r"\d+(\.\d+)+", res["pip_version"]) and res["date"].startswith("20")
    assert "--dry-run" in res["command"]


def test_environment_yml_installs_the_lock():
    text = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in text and "-r locks/gpu-requirements.txt" in text


def test_lock_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "scripts/lock_gpu.sh")], check=True)


def test_vllm_cpu_lock_matches_the_gpu_extras_vllm():
    """The vLLM CPU lane (locks/vllm-cpu.txt) runs the same vLLM version as the gpu extra, and its
    venv stays out of git."""
    pins = [
        Requirement(line)
        for line in (ROOT / "locks/vllm-cpu.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [canonicalize_name(r.name) for r in pins] == ["vllm-cpu"]
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    vllm = next(Requirement(r) for r in gpu["gpu"] if Requirement(r).name == "vllm")
    assert str(pins[0].specifier) == str(vllm.specifier) == "==0.31.0"
    assert "/.venv-vllm/" in (ROOT / ".gitignore").read_text().splitlines()


def test_unsloth_cpu_lock_matches_the_gpu_extras_unsloth():
    """The CPU set's Unsloth (locks/unsloth-cpu.txt, installed --no-deps by the Makefile's bootstrap)
    is the gpu extra's Unsloth, so its CPU tests exercise the version a GPU run gets."""
    pins = {
        canonicalize_name(r.name): str(r.specifier)
        for r in (
            Requirement(line)
            for line in (ROOT / "locks/unsloth-cpu.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        )
    }
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    extra = {
        canonicalize_name(Requirement(r).name): str(Requirement(r).specifier) for r in gpu["gpu"]
    }
    assert pins == {k: extra[k] for k in ("unsloth", "unsloth-zoo")}
    make = (ROOT / "Makefile").read_text()
    assert "--no-deps -r locks/unsloth-cpu.txt" in make
    assert "unsloth" not in (ROOT / "scripts/setup_vllm_cpu.sh").read_text()  # SIGILL there
