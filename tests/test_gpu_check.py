"""scripts/gpu_check.py: what can be checked without a GPU (the shapes it builds, its failure
handling, its wheel budget); on a GPU, the check itself. It has never run on a GPU here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

from polaris_lib.scale_out.memory import MODEL_SPECS

REPO = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_without_cuda_it_records_nothing(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert _script().main(["--out", str(out)]) == 2
    assert not out.exists()
    r = subprocess.run([str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True)
    assert r.returncode == 2 and "no CUDA GPU" in r.stderr


@pytest.mark.parametrize("name,billions", [("Qwen3-0.6B", 0.596), ("Qwen3-4B", 4.022)])
def test_shipped_configs_have_the_real_shapes(name, billions):
    """The shipped configs build, on the meta device, models with Qwen3's parameter counts
    (596,049,920 and 4,022,468,096: the model cards' 0.6B / 4.0B) and the planner's own count."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = _script().model_config(name)
    cfg = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_pretrained if False else AutoModelForCausalLM
        model = model.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == MODEL_SPECS[f"Qwen/{name}"].params
    assert abs(n / 1e9 - billions) < 0.001
    assert cfg.max_position_embeddings == 40960 and cfg.rope_parameters["rope_theta"] == 1e6
    assert cfg.tie_word_embeddings and cfg.vocab_size == 151936


def test_random_checkpoint_loads_and_chats(tmp_path):
    """build_checkpoint on a scaled-down Qwen3 (same code as the real shapes): the folder loads
    with transformers, the tokenizer renders the chat prompt with Qwen3's special tokens at
    their ids, and a full-vocabulary sample decodes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gc = _script()
    small = dict(gc.model_config("Qwen3-0.6B"), hidden_size=64, intermediate_size=128)
    small.update(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    folder = gc.build_checkpoint(small, tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.config.vocab_size == 151936 and tok.eos_token_id == 151645
    assert tok.pad_token_id == 151643 and tok.convert_tokens_to_ids("</think>") == 151647
    text = tok.apply_chat_template(
        [{"role": "user", "content": "w3 w4"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == 151644 and ids.count(151645) == 1
    assert tok.unk_token_id not in ids  # every word of the prompt is in the vocabulary
    assert tok.decode(ids).startswith("<|im_start|> user w3 w4 <|im_end|>")
    out = model.generate(torch.tensor([ids]), max_new_tokens=8, min_new_tokens=8, do_sample=True)
    assert out.shape[1] == len(ids) + 8
    assert isinstance(tok.decode(out[0, len(ids) :]), str)


def test_a_failed_part_fails_the_check():
    """Every part runs; one that raises is recorded with its error and the status is 1."""
    gc = _script()

    def boom():
        raise RuntimeError("out of memory at step 2")

    results, code = gc.run_parts({"a": lambda: {"status": "ok"}, "b": boom})
    assert code == 1 and results["a"]["status"] == "ok"
    assert results["b"]["status"] == "failed" and "out of memory" in results["b"]["error"]
    assert gc.run_parts({"a": lambda: {"status": "ok"}})[1] == 0
    assert gc.run_parts({"a": lambda: {"status": "skipped"}})[1] == 1


def test_the_wheels_it_needs_do_not_fit_64_mib():
    """The ledger of wheels beyond torch/transformers/peft/accelerate: TRL's GRPO trainer imports
    datasets, which imports pyarrow (52.5 MiB), and Unsloth's wheel is 27.3 MiB; together with
    the rest the lower bound is 96.4 MiB, over the 64 MiB that may travel (README, Known gaps)."""
    gc = _script()
    ledger = gc.wheel_ledger()
    names = {n.split("-")[0].lower() for n, _ in ledger}
    assert {"unsloth", "unsloth_zoo", "trl", "datasets", "pyarrow"} <= names
    total = sum(s for _, s in ledger)
    assert round(total / 2**20, 1) == 96.4
    assert "96.4 MiB, over the 64 MiB" in gc.wheel_budget_problem([s for _, s in ledger])
    assert gc.wheel_budget_problem([2**20] * 64) == ""
    readme = (REPO / "README.md").read_text()
    assert "96.4 MiB" in readme


def test_trl_takes_the_generation_kwargs_that_force_full_length():
    """The check forces full-length generations through GRPOConfig.generation_kwargs."""
    from polaris_lib.config import get_preset
    from polaris_lib.training.grpo_config import to_grpo_config

    args = to_grpo_config(
        get_preset("tiny"), 1, 1.0, "/tmp/x", generation_kwargs={"min_new_tokens": 5}
    )
    assert args.generation_kwargs == {"min_new_tokens": 5}


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU with unsloth")
def test_gpu_check_runs(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert _script().main(["--models", "0.6b", "--out", str(out), "--work", str(tmp_path)]) == 0
    res = json.loads(out.read_text())
    run = res["models"]["Qwen3-0.6B"]
    assert run["status"] == "ok" and run["peak_allocated_gib"] <= 24
