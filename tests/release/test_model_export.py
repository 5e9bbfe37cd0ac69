"""`polaris export model`: a loadable Hugging Face folder, the evaluation's sampling settings, a card
written from the run's files, LoRA merged, nothing left half-written, offline push refused first."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from synthetic import make_run_folder
from tiny_model import random_qwen3
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from polaris_lib import artifacts, cli
from polaris_lib.config import get_preset
from polaris_lib.data import catalog
from polaris_lib.release import ExportError, export_model


@pytest.fixture
def finished_run(tmp_path):
    """A tiny run folder whose stage-3 checkpoint holds full weights (a random tiny Qwen3)."""
    run = make_run_folder(tmp_path / "runA")
    model, tok = random_qwen3()
    final = artifacts.checkpoint_dir(run, 3) / "final"
    model.save_pretrained(final)
    tok.save_pretrained(final)
    return run, final


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_export_writes_a_loadable_folder_with_the_evaluation_settings(finished_run, tmp_path):
    run, final = finished_run
    out = tmp_path / "exported"
    paths = export_model(run, out, log=lambda s: None)
    assert paths == {"model": out, "card": out / "README.md"}
    assert _same_weights(
        AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(final)
    )
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.apply_chat_template(
        [{"role": "user", "content": "1+2"}], tokenize=False, add_generation_prompt=True
    ).endswith("assistant\n")
    ev = get_preset("tiny").eval
    gen = GenerationConfig.from_pretrained(out)
    assert (gen.temperature, gen.top_p, gen.max_new_tokens) == (
        ev.temperature,
        ev.top_p,
        ev.max_new_tokens,
    )
    assert gen.do_sample and gen.top_k is None  # top_k 0 means off in the kit
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["rope_parameters"]["rope_type"] == "default"  # evaluated without YaRN today
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exported")]  # no temp left


def test_model_card_numbers_come_from_the_run(finished_run, tmp_path):
    run, final = finished_run
    card = export_model(run, tmp_path / "m", stage=3, log=lambda s: None)["card"].read_text()
    summary = pd.read_parquet(run / "05_eval_aime" / "summary.parquet")
    for r in summary.to_dict("records"):
        assert f"| {r['checkpoint']} | {r['benchmark']} | {r['k']} | {r['avg']:.3f} |" in card
    assert "| aime24 |" in card and "harness check only" in card
    assert "0" * 40 in card  # the kit commit recorded in the manifest
    assert "cannot do competition math" in card and "vllm serve" in card
    assert "| 3 | 80 | 1.4 | 5 |" in card  # stage 3: length 80, temperature, steps from metrics


def test_a_lora_checkpoint_is_merged_into_its_base(tmp_path):
    from peft import LoraConfig, get_peft_model

    run = make_run_folder(tmp_path / "runL")
    base, tok = random_qwen3()
    base_dir = tmp_path / "base"
    base.save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    final = artifacts.checkpoint_dir(run, 3) / "final"
    lora.save_pretrained(final)
    tok.save_pretrained(final)
    expected = lora.merge_and_unload()
    out = export_model(run, tmp_path / "merged", log=lambda s: None)["model"]
    exported = AutoModelForCausalLM.from_pretrained(out)
    assert not (out / "adapter_config.json").exists()
    assert _same_weights(exported, expected)
    assert not _same_weights(exported, AutoModelForCausalLM.from_pretrained(base_dir))


def test_offline_push_fails_before_any_work(finished_run, tmp_path, monkeypatch):
    run, _ = finished_run
    monkeypatch.setattr("polaris_lib.release.model.hub_reachable", lambda: False)
    with pytest.raises(ExportError, match="hub does not answer"):
        export_model(run, tmp_path / "x", push_to_hub="me/model", log=lambda s: None)
    assert not (tmp_path / "x").exists()


def test_cli_export_model(finished_run, tmp_path, capsys, monkeypatch):
    run, _ = finished_run
    out = tmp_path / "cli-out"
    assert cli.main(["export", "model", "--run-dir", str(run), "--out", str(out)]) == 0
    assert "vllm serve" in capsys.readouterr().out and (out / "README.md").exists()
    monkeypatch.setattr(catalog, "hub_reachable", lambda: False)
    monkeypatch.setattr("polaris_lib.release.model.hub_reachable", lambda: False)
    argv = ["export", "model", "--run-dir", str(run), "--out", str(out), "--push-to-hub", "a/b"]
    assert cli.main(argv) == 2
    assert "hub does not answer" in capsys.readouterr().err
