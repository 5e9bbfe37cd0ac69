"""The embedded toy world: tokenizer, task generator, model save/load, warm start and its cache."""

from __future__ import annotations

import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from polaris_lib import toy
from polaris_lib.config.sections import ConfigError, ToyConfig
from polaris_lib.grading.grader import grade
from polaris_lib.toy import build as toy_build

# A world small enough to build in a few seconds: checks the machinery, not the accuracy band.
FAST = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, warmstart_steps=3)


@pytest.fixture(scope="module")
def tok():
    return toy.build_tokenizer()


def test_tokenizer_round_trip_after_save(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    problem = "7+3+5"
    text = toy.prompt_text(loaded, problem) + toy.reference_solution(problem) + toy.IM_END
    ids = loaded(text, add_special_tokens=False).input_ids
    assert loaded.decode(ids) == text
    for special in (toy.IM_START, toy.IM_END, toy.THINK, toy.THINK_END):
        assert len(loaded(special, add_special_tokens=False).input_ids) == 1, special
    assert loaded.eos_token == toy.IM_END and loaded.pad_token == toy.PAD
    assert loaded.pad_token_id != loaded.eos_token_id
    # as in Qwen3: think tags survive skip_special_tokens (TRL decodes completions that way)
    assert loaded.decode(ids, skip_special_tokens=True) == "user\n" + problem + "\nassistant\n" + (
        toy.reference_solution(problem)
    )
    # character level: one id per ordinary character, newline and space included
    assert len(loaded("a b\n12", add_special_tokens=False).input_ids) == 6


def test_chat_template_is_qwen3_style(tok):
    msgs = [{"role": "user", "content": "2+3"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n2+3<|im_end|>\n<|im_start|>assistant\n"
    no_think = tok.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_problems_schema_stable_and_disjoint():
    cfg = ToyConfig()
    a = toy.make_problems(cfg, "train", 200)
    assert list(a.columns) == [
        "problem_id",
        "problem",
        "answer",
        "source",
        "difficulty",
        "trace_len",
    ]
    assert a.problem_id.is_unique and (a.source == "toy").all()
    assert a.difficulty.between(cfg.min_terms, cfg.max_terms).all()
    assert toy.make_problems(cfg, "train", 200).equals(a)  # same call, same table
    assert toy.make_problems(cfg, "train", 50).equals(a.head(50))  # prefix-stable
    splits = {s: set(toy.make_problems(cfg, s, 100).problem) for s in ("train", "test", "probe")}
    assert not (splits["train"] & splits["test"] or splits["train"] & splits["probe"])
    assert not splits["test"] & splits["probe"]
    # longer traces for more terms: the length schedule has something to truncate
    by_k = a.groupby("difficulty").trace_len.mean()
    assert by_k.is_monotonic_increasing and by_k.iloc[-1] > 2.5 * by_k.iloc[0]
    long = toy.make_problems(cfg, "test", 10, min_terms=10, max_terms=12)
    assert long.difficulty.between(10, 12).all()
    with pytest.raises(ValueError, match="split"):
        toy.make_problems(cfg, "dev", 3)


def test_answers_graded_right_by_the_real_grader():
    for cfg in (ToyConfig(), ToyConfig(modulus=10)):
        for row in toy.make_problems(cfg, "test", 12, seed=3).itertuples():
            expr, _, mod = row.problem.partition(" mod ")
            total = sum(int(t) for t in expr.split("+"))  # recomputed from the text
            gold = str(total % int(mod) if mod else total)
            assert row.answer == gold
            assert grade(toy.reference_solution(row._asdict()), gold) == 1
            assert grade(toy.reference_solution(row._asdict()), str(int(gold) + 1)) == 0
    # the trace itself is right: every step's numbers sum to the gold (plain, and mod 10)
    for step in toy.trace_steps([7, 3, 5, 2]):
        assert sum(map(int, step.split("+"))) == 17
    for step in toy.trace_steps([7, 3, 5, 2], modulus=10):
        assert sum(map(int, step.split("+"))) % 10 == 7


def test_sloppy_teacher_without_noise_is_the_reference():
    import numpy as np

    rng = np.random.default_rng(0)
    assert toy.sloppy_solution([7, 3, 5, 2], rng, 0.0) == toy.reference_solution("7+3+5+2")
    noisy = [toy.sloppy_solution([9, 8, 7, 6, 5], rng, 0.3) for _ in range(200)]
    wrong = sum(not n.endswith("\\boxed{35}") for n in noisy)
    assert 0.3 < wrong / 200 < 0.99  # errors happen and propagate to the answer


def test_guessing_teacher_is_right_less_often_on_harder_items():
    import numpy as np

    rng = np.random.default_rng(0)
    easy = [toy.guess_solution([2, 3], rng, 0.6) for _ in range(400)]
    hard = [toy.guess_solution([5, 4, 3, 2, 1, 5, 4, 3], rng, 0.6) for _ in range(400)]
    assert all(g.startswith("<think>~") and "</think>\\boxed{" in g for g in easy + hard)

    def right(guesses: list[str], total: int) -> float:
        return sum(g.endswith(f"\\boxed{{{total}}}") for g in guesses) / len(guesses)

    assert 0.5 < right(easy, 5) < 0.7 and right(hard, 27) < 0.12
    for g in easy + hard:  # well formed: the think part and the box agree, so the grader decides
        assert g.split("~")[1].split("<")[0] == g.split("{")[1].rstrip("}")


def test_uninformative_misses_spread_over_every_possible_sum():
    """The hard world's teacher: a wrong guess is any other reachable total, not a near miss, so
    the guessed number carries no information about the true sum."""
    import numpy as np

    rng = np.random.default_rng(0)
    terms = [5, 4, 3, 2, 1, 5, 4, 3]  # 27; 8 terms of 1..5 reach 8..40
    misses = [
        int(g.split("~")[1].split("<")[0])
        for g in (toy.guess_solution(terms, rng, 0.0, 0, "uninformative", 5) for _ in range(2000))
    ]
    assert 0.03 < misses.count(27) / len(misses) < 0.07  # right 5% of the time (the floor)
    assert min(misses) == 8 and max(misses) == 40
    assert sum(abs(m - 27) > 3 for m in misses) / len(misses) > 0.7  # "near" would give 0
    near = [toy.guess_solution(terms, rng, 0.0) for _ in range(200)]
    assert all(abs(int(g.split("~")[1].split("<")[0]) - 27) <= 3 for g in near)
    mod = [toy.guess_solution([3, 4], rng, 0.0, 5, "uninformative", 5) for _ in range(300)]
    assert {int(g.split("~")[1].split("<")[0]) for g in mod} == {0, 1, 2, 3, 4}  # 7 mod 5 = 2


def test_new_toy_fields_at_their_default_keep_the_shipped_hash():
    """Fields added after toy-v5 leave the hash alone at the value the shipped worlds were built
    with (their folders keep their names) and change it at any other value."""
    assert toy_build.config_hash(ToyConfig()) == "26478c2e2190eae9"  # tiny's name since toy-v5
    assert toy_build.config_hash(ToyConfig(guess_miss="uninformative")) != toy_build.config_hash(
        ToyConfig()
    )
    with pytest.raises(ConfigError, match="guess_miss"):
        ToyConfig(guess_miss="far")


def test_teacher_guesses_more_on_longer_sums():
    import numpy as np

    cfg = ToyConfig(warmstart_shortcut=0.8)
    rng = np.random.default_rng(0)

    def guessed(terms):
        hits = [toy.teacher_solution(terms, rng, cfg).startswith("<think>~") for _ in range(500)]
        return sum(hits) / 500

    assert guessed([1, 2]) == 0.0  # the easiest items are always worked
    assert 0.7 < guessed([1] * cfg.max_terms) < 0.9
    assert 0.3 < guessed([1] * 5) < 0.5
    off = ToyConfig(warmstart_shortcut=0.0, warmstart_noise=0.0)
    assert all(  # shortcut off: always the worked trace, even on the longest sums
        toy.teacher_solution([1] * 8, rng, off) == toy.reference_solution("+".join(["1"] * 8))
        for _ in range(50)
    )


def test_model_save_load_same_logits(tok, tmp_path):
    cfg = ToyConfig(**FAST)
    model = toy.build_model(cfg, tok)
    assert model.config.rope_parameters["rope_theta"] == cfg.rope_theta
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([tok("<|im_start|>user\n1+2", add_special_tokens=False).input_ids])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_default_model_is_small():
    tok = toy.build_tokenizer()
    n = sum(p.numel() for p in toy.build_model(ToyConfig(), tok).parameters())
    assert n <= 1_000_000


def test_cache_reused_and_deterministic(tmp_path):
    cfg = ToyConfig(**FAST)
    t0 = time.perf_counter()
    path = toy_build.build_toy_world(cfg, tmp_path, progress=False, eval_per_difficulty=1)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert toy_build.build_toy_world(cfg, tmp_path, progress=False, eval_per_difficulty=1) == path
    assert time.perf_counter() - t0 < min(0.5, first / 5)
    assert path.name == f"toy-{toy_build.config_hash(cfg)}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building")]
    stats = toy_build.warmstart_stats(path)
    assert stats["steps"] == 3 and "acc_T1" in stats and "acc_greedy" in stats
    assert toy_build.config_hash(ToyConfig(**{**FAST, "seed": 1})) != toy_build.config_hash(cfg)


@pytest.mark.slow
def test_rebuild_is_deterministic(tmp_path):
    """A forced rebuild with the same seed gives the same weights (deterministic on CPU)."""
    cfg = ToyConfig(**FAST)
    path = toy_build.build_toy_world(cfg, tmp_path, progress=False, eval_per_difficulty=1)
    w1 = AutoModelForCausalLM.from_pretrained(path).state_dict()
    toy_build.build_toy_world(cfg, tmp_path, force=True, progress=False, eval_per_difficulty=1)
    w2 = AutoModelForCausalLM.from_pretrained(path).state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_config_validation():
    with pytest.raises(ConfigError, match="hidden_size"):
        ToyConfig(hidden_size=512)
    with pytest.raises(ConfigError, match="warmstart_noise"):
        ToyConfig(warmstart_noise=0.7)
    with pytest.raises(ConfigError, match="warmstart_shortcut"):
        ToyConfig(warmstart_shortcut=1.0)


@pytest.mark.slow
def test_warm_start_reaches_the_band(toy_world_path):
    """The default world (built once per session, reused from the cache): policy is in the band."""
    stats = toy_build.warmstart_stats(toy_world_path)
    acc = stats["acc_T1"]
    assert 0.2 <= acc["all"] <= 0.6, acc
    easy, hard = acc[str(ToyConfig().min_terms)], acc[str(ToyConfig().max_terms)]
    assert easy >= 0.7 and hard <= 0.4, acc
    assert stats["acc_greedy"]["all"] > acc["all"]  # right mode, under-sharpened
