"""Unsloth before TRL (issue 12, defect 3): the training face imports Unsloth first where the
environment wants it, and an unsloth-backend trainer must derive from Unsloth's GRPOTrainer.

The tests that import Unsloth itself (marker `unsloth`) run where it is importable — its CPU
backend: unsloth and unsloth-zoo 2026.10.9 installed without dependencies on top of the CPU set
by the Makefile's bootstrap — and are skipped elsewhere; they run in subprocesses, since import
order is per process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from polaris_lib.config.sections import ConfigError
from polaris_lib.policy.load import UNSLOTH_FIRST_ENV
from polaris_lib.training import PolarisGRPOTrainer, derives_from_unsloth, require_backend_trainer

HAS_UNSLOTH = importlib.util.find_spec("unsloth") is not None


def needs_unsloth(test):
    """Runs where unsloth is importable (`make test`'s .venv: locks/unsloth-cpu.txt)."""
    skip = pytest.mark.skipif(not HAS_UNSLOTH, reason="unsloth is not importable here")
    return pytest.mark.unsloth(skip(test))


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (import order is a property of a process)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


IMPORT_ORDER = """
import json, sys
started = []  # top-level packages in the order their import began (sys.modules' order is not it)
class Record:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if "." not in name:
            started.append(name)
sys.meta_path.insert(0, Record)
import polaris_lib.training
names = ("unsloth", "trl", "transformers", "peft")
print(json.dumps({m: started.index(m) if m in started else None for m in names}))
"""


def test_unsloth_backend_refuses_trls_own_trainer():
    """PolarisGRPOTrainer bound TRL's GRPOTrainer here (no Unsloth patch): an unsloth-backend run
    stops at construction, before anything is built, and says why."""
    assert not derives_from_unsloth(PolarisGRPOTrainer)
    require_backend_trainer(PolarisGRPOTrainer, "transformers")  # plain TRL: fine
    with pytest.raises(ConfigError, match="trl was imported before unsloth"):
        PolarisGRPOTrainer(model=None, backend="unsloth")


def test_unsloth_first_switch_without_unsloth_fails_clearly():
    if HAS_UNSLOTH:
        pytest.skip("unsloth is importable here")
    r = _python("import polaris_lib.training", **{UNSLOTH_FIRST_ENV: "1"})
    assert r.returncode != 0 and "unsloth is not installed" in r.stderr, r.stderr[-2000:]
    off = _python(IMPORT_ORDER, **{UNSLOTH_FIRST_ENV: "0"})
    assert off.returncode == 0 and json.loads(off.stdout.splitlines()[-1])["unsloth"] is None


@needs_unsloth
def test_training_face_imports_unsloth_before_trl_and_peft():
    r = _python(IMPORT_ORDER, **{UNSLOTH_FIRST_ENV: "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    order = json.loads(r.stdout.splitlines()[-1])
    assert None not in order.values(), order
    assert order["unsloth"] < min(order["trl"], order["transformers"], order["peft"]), order


@needs_unsloth
def test_on_unsloths_cpu_backend_the_trainer_is_trls():
    """Which class the kit's trainer derives from: Unsloth's CPU backend (no GPU) patches SFT
    only, so even imported first it leaves trl.GRPOTrainer as TRL's, and the kit refuses the
    unsloth backend there (on a GPU, PatchFastRL puts UnslothGRPOTrainer in its place)."""
    code = """
import trl.trainer.grpo_trainer as g
from polaris_lib.training import PolarisGRPOTrainer, derives_from_unsloth, require_backend_trainer
print(PolarisGRPOTrainer.__mro__[1] is g.GRPOTrainer, derives_from_unsloth(PolarisGRPOTrainer))
try:
    require_backend_trainer(PolarisGRPOTrainer, "unsloth")
except Exception as e:
    print(type(e).__name__)
"""
    r = _python(code, **{UNSLOTH_FIRST_ENV: "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-3:] == ["True", "False", "ConfigError"], r.stdout[-500:]


@needs_unsloth
def test_unsloth_refuses_cpu_when_told():
    r = _python("import unsloth", UNSLOTH_DISABLE_CPU_FALLBACK="1")
    assert r.returncode != 0


@needs_unsloth
def test_lora_saved_by_unsloth_loads_in_unsloth_and_in_the_kit(tmp_path):
    """An adapter trained and saved through Unsloth (its CPU backend: FastLanguageModel =
    stock transformers + PEFT) reloads through Unsloth with the same logits, and the kit's
    loader (`load_policy` on the adapter folder, base resolved through adapter_config.json)
    gives the same logits too."""
    from polaris_lib import toy
    from polaris_lib.config import get_preset
    from polaris_lib.policy import load as models

    run = get_preset("tiny")
    tok = toy.build_tokenizer()
    torch.manual_seed(0)
    toy.build_model(run.toy, tok).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    adapter = tmp_path / "checkpoints" / "stage1" / "final"
    code = f"""
import unsloth, torch
from unsloth import FastLanguageModel
from polaris_lib.policy.load import LORA_TARGETS
kw = dict(max_seq_length=128, load_in_4bit=False, dtype=torch.float32)
model, tok = FastLanguageModel.from_pretrained({str(tmp_path / "base")!r}, **kw)
model = FastLanguageModel.get_peft_model(model, r=8, lora_alpha=16, target_modules=LORA_TARGETS)
torch.manual_seed(1)
with torch.no_grad():  # a trained adapter: B is no longer zero
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.5)
ids = torch.tensor([list(range(4, 40))])
model.eval()
with torch.no_grad():
    saved = model(ids).logits
model.save_pretrained({str(adapter)!r}); tok.save_pretrained({str(adapter)!r})
again, _ = FastLanguageModel.from_pretrained({str(adapter)!r}, **kw)
again.eval()
with torch.no_grad():
    print(type(again).__name__, float((again(ids).logits - saved).abs().max()))
torch.save(saved, {str(tmp_path / "saved.pt")!r})
"""
    r = _python(code, **{UNSLOTH_FIRST_ENV: "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    kind, diff = r.stdout.split()[-2:]
    assert kind.startswith("PeftModel") and float(diff) < 1e-5, r.stdout[-500:]
    assert models.base_model_path(adapter) == str(tmp_path / "base")
    model, _ = models.load_policy(run, str(adapter))
    saved = torch.load(tmp_path / "saved.pt")
    with torch.no_grad():
        got = model(torch.tensor([list(range(4, 40))])).logits
        base = models.load_policy(run, str(tmp_path / "base"))[0](
            torch.tensor([list(range(4, 40))])
        ).logits
    assert (got - saved).abs().max() < 1e-5 and (base - saved).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["01", "02", "03", "04", "05"])
def test_notebook_imports_leave_room_for_unsloth_first(name):
    """A notebook's imports cell imports nothing that binds trl/transformers/peft before Unsloth:
    01, 02, 04 and 05 none of them (load_policy imports Unsloth first when it loads an Unsloth
    model), 03 only through the training face, which decides on Unsloth first."""
    from pathlib import Path

    import nbformat

    (path,) = Path(__file__).resolve().parents[2].joinpath("notebooks").glob(f"{name}_*.ipynb")
    imports = nbformat.read(path, as_version=4).cells[1].source
    code = IMPORT_ORDER.replace("import polaris_lib.training\n", imports + "\n")
    r = _python(code, **{UNSLOTH_FIRST_ENV: "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    order = json.loads(r.stdout.splitlines()[-1])
    heavy = {m: i for m, i in order.items() if i is not None and m != "unsloth"}
    assert bool(heavy) == (name == "03"), order
