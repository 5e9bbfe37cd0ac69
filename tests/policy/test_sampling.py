"""sample(): one tidy row per (problem, sample), requested settings honoured, reproducible."""

from __future__ import annotations

import pytest
import torch

from polaris_lib import toy
from polaris_lib.config.sections import ToyConfig
from polaris_lib.policy.sampling import COLUMNS, prompt_texts, resolve_backend, sample
from polaris_lib.toy import build as toy_build

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


# ----------------------------------------------------------------------------- engine lifetime
def _fake_llm(events: list, *, core=True, executor=False, close=False, fail=False):
    """A stand-in vllm.LLM (this machine has no vLLM): only the shutdown methods asked for, and a
    reference cycle (engine <-> llm_engine) like vLLM's, so only gc.collect() frees it."""
    from types import SimpleNamespace

    def rec(name):
        def call():
            events.append(name)
            if fail:
                raise RuntimeError("engine already dead")

        return call

    LLM = type("LLM", (), {"__module__": "vllm.entrypoints.llm"})
    llm = LLM()
    llm.llm_engine = SimpleNamespace(owner=llm)
    if core:
        llm.llm_engine.engine_core = SimpleNamespace(shutdown=rec("engine_core.shutdown"))
    if executor:
        llm.llm_engine.model_executor = SimpleNamespace(shutdown=rec("model_executor.shutdown"))
    if close:
        llm.shutdown = rec("llm.shutdown")
    return llm


@pytest.fixture
def parallel_state(monkeypatch):
    """A stand-in vllm.distributed.parallel_state recording its teardown calls."""
    import sys
    import types

    events = []
    mod = types.ModuleType("vllm.distributed.parallel_state")
    mod.destroy_model_parallel = lambda: events.append("destroy_model_parallel")
    mod.destroy_distributed_environment = lambda: events.append("destroy_distributed_environment")
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", mod)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return events


def test_release_engine_shuts_down_tears_down_and_frees(parallel_state):
    import weakref

    from polaris_lib.policy.sampling import LoadedModel, release_engine

    events = parallel_state
    held = LoadedModel(_fake_llm(events), "tok")
    alive = weakref.ref(held.model)
    done = release_engine(held)
    cuda = ["cuda.empty_cache"] if torch.cuda.is_available() else []
    assert done == [
        "llm_engine.engine_core.shutdown",
        "dropped",
        "destroy_model_parallel",
        "destroy_distributed_environment",
        "gc.collect",
        *cuda,
    ]
    assert events == [
        "engine_core.shutdown",
        "destroy_model_parallel",
        "destroy_distributed_environment",
    ]
    assert held.model is None and held.tokenizer is None
    assert alive() is None  # the cycle is gone: nothing keeps the engine's memory


def test_release_engine_calls_what_exists_tolerates_the_rest(parallel_state, monkeypatch, caplog):
    import sys

    from polaris_lib.policy.sampling import LoadedModel, release_engine

    events = parallel_state
    every = LoadedModel(_fake_llm(events, close=True, executor=True), None)
    assert release_engine(every)[:3] == [
        "shutdown",
        "llm_engine.engine_core.shutdown",
        "llm_engine.model_executor.shutdown",
    ]
    events.clear()
    failing = LoadedModel(_fake_llm(events, fail=True), None)
    done = release_engine(failing)  # a close that raises is logged; the rest still runs
    assert "llm_engine.engine_core.shutdown" not in done and "destroy_model_parallel" in done
    assert "engine_core.shutdown failed (RuntimeError: engine already dead)" in caplog.text
    monkeypatch.setenv("WORLD_SIZE", "2")  # a launcher's process group is not vLLM's to destroy
    assert "destroy_model_parallel" not in release_engine(LoadedModel(_fake_llm([]), None))
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", None)  # not importable
    bare = LoadedModel(_fake_llm([], core=False), None)
    assert release_engine(bare)[:2] == ["dropped", "gc.collect"]


def test_loaded_model_releases_vllm_engines_only(parallel_state, monkeypatch):
    from types import SimpleNamespace

    from polaris_lib.policy import sampling

    events = parallel_state
    with sampling.loaded_model((_fake_llm(events), "tok")) as m:
        assert resolve_backend(m.model) == "vllm" and m.tokenizer == "tok"
    assert m.model is None and events[0] == "engine_core.shutdown"
    events.clear()
    unsloth = SimpleNamespace(vllm_engine=_fake_llm(events))  # fast_inference: engine inside
    with pytest.raises(KeyError), sampling.loaded_model((unsloth, "tok")):
        raise KeyError("a failing pair")  # released on the way out all the same
    assert events[0] == "engine_core.shutdown"
    released = []
    monkeypatch.setattr(sampling, "release_engine", released.append)
    with sampling.loaded_model((torch.nn.Linear(2, 2), "tok")) as m:  # transformers: as before
        pass
    assert released == [] and m.model is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and vLLM")
def test_vllm_engines_in_sequence_give_their_memory_back():
    """Two real engines, each claiming 60% of the GPU, one after the other: vLLM refuses to start
    the second unless the first's memory came back (loaded_model -> release_engine)."""
    from vllm import LLM

    from polaris_lib.policy.sampling import loaded_model

    path, probs = toy_build.build_toy_world(ToyConfig()), toy.make_problems(ToyConfig(), "test", 2)
    free_before = torch.cuda.mem_get_info()[0]

    def load(seed):  # no reference outside the holder
        llm = LLM(model=str(path), dtype="float32", gpu_memory_utilization=0.6, seed=seed)
        return llm, llm.get_tokenizer()

    for seed in (0, 1):
        with loaded_model(load(seed)) as m:
            assert (
                len(sample(m.model, m.tokenizer, probs, n=2, temperature=1.0, max_new_tokens=8))
                == 4
            )
        assert torch.cuda.mem_get_info()[0] > free_before - 2 * 2**30, f"engine {seed} kept memory"


def test_vllm_finish_reason_maps_to_finished_and_truncated(world, monkeypatch):
    """A stop at max_tokens or at the engine's max_model_len (both finish_reason 'length') is
    truncated, even when shorter than max_new_tokens; 'stop' is finished; 'abort' is neither.
    A stand-in engine (the real one runs in tests/policy/test_vllm_cpu.py, `make test-vllm`)."""
    import sys
    import types
    from types import SimpleNamespace as NS

    _, tok, probs = world
    fake = types.ModuleType("vllm")
    fake.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    reasons = ["stop", "length", "length", "abort", "stop"]
    lengths = [3, 12, 5, 2, 4]  # the 5-token 'length' stop hit max_model_len, not max_tokens

    class Engine:
        def generate(self, prompts, sampling_params):
            assert sampling_params["max_tokens"] == 12
            # Token ids tokenised like the transformers path: no special tokens added on top.
            texts = prompt_texts(tok, probs)
            want = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
            assert [p["prompt_token_ids"] for p in prompts] == want
            return [
                NS(outputs=[NS(text="x", token_ids=[0] * n, finish_reason=r)])
                for r, n, _ in zip(reasons, lengths, prompts, strict=True)
            ]

    out = sample(Engine(), tok, probs, n=1, temperature=1.0, max_new_tokens=12, backend="vllm")
    assert out.finished.tolist() == [True, False, False, False, True]
    assert out.truncated.tolist() == [False, True, True, False, False]
