"""sample(): one tidy row per (problem, sample), requested settings honoured, reproducible."""

from __future__ import annotations

import pytest
import torch

from polaris_lib import toy, toy_build
from polaris_lib.config import ToyConfig
from polaris_lib.sampling import COLUMNS, prompt_texts, resolve_backend, sample

SMALL = ToyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1)


@pytest.fixture(scope="module")
def world():
    tok = toy.build_tokenizer()
    model = toy.build_model(SMALL, tok).eval()
    return model, tok, toy.make_problems(SMALL, "test", 5)


def test_n_samples_per_problem_and_columns(world):
    model, tok, probs = world
    out = sample(model, tok, probs, n=3, temperature=1.0, max_new_tokens=12, batch_size=4)
    assert list(out.columns) == COLUMNS and len(out) == 15
    assert (out.groupby("problem_id").sample_idx.apply(sorted) == [[0, 1, 2]] * 5).all()
    assert set(out.problem_id) == set(probs.problem_id)
    assert out.n_tokens.between(1, 12).all()
    assert (out.truncated == (~out.finished & (out.n_tokens == 12))).all()


def test_deterministic_under_seed(world):
    model, tok, probs = world
    kw = dict(n=2, temperature=1.3, max_new_tokens=10, progress=False)
    a = sample(model, tok, probs, seed=1, **kw)
    assert a.equals(sample(model, tok, probs, seed=1, **kw))
    assert not a.text.equals(sample(model, tok, probs, seed=2, **kw).text)


def test_greedy_and_top_k_one_agree(world):
    model, tok, probs = world
    greedy = sample(model, tok, probs, n=1, temperature=0.0, max_new_tokens=8)
    top1 = sample(model, tok, probs, n=1, temperature=1.0, top_k=1, max_new_tokens=8)
    assert greedy.text.equals(top1.text)


@pytest.mark.slow
def test_finished_texts_keep_think_tags_and_drop_eos(toy_world_path):
    """The warm-started world closes its answers: </think> stays in the text, eos does not."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(toy_world_path).eval()
    tok = AutoTokenizer.from_pretrained(toy_world_path)
    probs = toy.make_problems(ToyConfig(), "test", 4, max_terms=3)
    out = sample(model, tok, probs, n=2, temperature=0.0, max_new_tokens=40)
    done = out[out.finished]
    assert len(done) > 0
    assert done.text.str.contains("</think>", regex=False).all()
    assert not out.text.str.contains(toy.IM_END, regex=False).any()
    assert not out.text.str.contains(toy.PAD, regex=False).any()


def test_prompts_use_the_chat_template(world):
    _, tok, probs = world
    p = prompt_texts(tok, probs.head(1))[0]
    assert p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n")
    assert probs.problem.iloc[0] in p


def test_bad_input_is_named(world):
    model, tok, probs = world
    with pytest.raises(KeyError, match="problem"):
        sample(model, tok, probs.drop(columns="problem"), n=1, temperature=1, max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, tok, probs, n=1, temperature=-1, max_new_tokens=2)
    assert resolve_backend(model) == "transformers"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and vLLM")
def test_vllm_backend_on_the_toy_folder(tmp_path):
    """vLLM offline on the toy model's saved folder: n samples, max_tokens honoured (not 16)."""
    from vllm import LLM

    cfg = ToyConfig()
    path = toy_build.build_toy_world(cfg)
    llm = LLM(model=str(path), dtype="float32", gpu_memory_utilization=0.2, seed=0)
    tok = llm.get_tokenizer()
    probs = toy.make_problems(cfg, "test", 4)
    out = sample(llm, tok, probs, n=3, temperature=1.0, max_new_tokens=40)
    assert len(out) == 12 and resolve_backend(llm) == "vllm"
    assert (out.n_tokens > 16).any() or out.finished.all()
