"""Tests for the grader (polaris_lib/grading/grader.py, polaris_lib/grading/worker.py) with real math-verify."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from polaris_lib.grading.grader import Grader, extract_boxed, grade, make_reward_fn, normalize_gold
from polaris_lib.grading.pool import WALL_BACKSTOP

DATA = Path(os.environ.get("POLARIS_DATA_DIR", Path(__file__).parents[3] / "shared" / "data"))
BENCHMARKS = ["aime24", "aime25", "amc23", "minerva", "olympiad"]


@pytest.fixture(scope="module")
def grader():
    g = Grader(timeout_s=2.0, processes=2)
    yield g
    g.close()


def wrap(answer: str) -> str:
    return f"<think>x</think> The answer is \\boxed{{{answer}}}"


def load_golds(name: str) -> list:
    if name in BENCHMARKS:
        pd = pytest.importorskip("pandas")
        path = DATA / "benchmarks" / f"{name}.parquet"
        if not path.exists():
            pytest.skip(f"{path} absent (set POLARIS_DATA_DIR)")
        return [r["ground_truth"] for r in pd.read_parquet(path)["reward_model"]]
    path = DATA / "pools" / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} absent (set POLARIS_DATA_DIR)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if name == "gsm8k_test":
        return [r["answer"].split("####")[-1].strip() for r in rows]
    return [r["answer"] for r in rows]


@pytest.fixture(scope="module")
def data_grader():
    g = Grader(timeout_s=5.0, processes=2)
    yield g
    g.close()


def self_grade(name: str, g: Grader, stride: int = 1) -> None:
    golds = load_golds(name)[::stride]
    pairs = [(wrap(form), gold) for gold in golds for form in normalize_gold(gold)]
    assert len(pairs) >= len(golds)
    results = g.grade_batch_results([p[0] for p in pairs], [p[1] for p in pairs])
    bad = [(pairs[i][1], r.reason) for i, r in enumerate(results) if r.score != 1]
    assert not bad, f"{len(bad)} golds fail to self-grade: {bad[:10]}"


@pytest.mark.parametrize("name", BENCHMARKS + ["math500", "gsm8k_test"])
def test_every_gold_self_grades(name, data_grader):
    """Each stored gold, boxed in every acceptable form, grades 1 (gold parsed by math-verify).

    Minerva/Olympiad golds are slow to parse (physics formulas): every 4th here, all in the slow tier.
    """
    self_grade(name, data_grader, stride=4 if name in {"minerva", "olympiad"} else 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHMARKS + ["math500", "gsm8k_test"])
def test_every_gold_self_grades_through_verify(name):
    """Same, with the exact-match short-circuit off: math-verify's verify decides every pair."""
    g = Grader(timeout_s=5.0, processes=2, short_circuit=False)
    try:
        self_grade(name, g)
    finally:
        g.close()


def test_normalize_gold_types():
    assert normalize_gold(142.0) == ("142",)
    assert normalize_gold(np.float64(2.5)) == ("2.5",)
    assert normalize_gold(7) == ("7",)
    assert normalize_gold(np.array(["9.6\n", "9.6"], dtype=object)) == ("9.6",)
    assert normalize_gold("$\\frac{1}{2}$") == ("\\frac{1}{2}",)
    assert normalize_gold("  ") == ()
    assert normalize_gold(float("nan")) == ()


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("x=5", "5"),
        ("[1, 2)", "[1,2)"),
        ("(3, 5)", "(3,5)"),
        ("10\\text{ cm}", "10"),
        ("30^\\circ", "30"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("25", "025"),
    ],
)
def test_classic_equivalences(answer, gold, grader):
    assert grader.grade(wrap(answer), gold) == 1


@pytest.mark.parametrize(
    "answer, gold",
    [("\\frac{1}{3}", "0.5"), ("6", "5"), ("(3, 6)", "(3,5)"), ("[1, 2]", "[1,2)")],
)
def test_wrong_answers_score_zero(answer, gold, grader):
    assert grader.grade_batch_results([wrap(answer)], [gold])[0].reason == "wrong"


def test_short_circuits_agree_with_math_verify(grader):
    """Integer compare and exact-string match give math-verify's verdicts (checked with them off)."""
    pairs = [("25", "025"), ("-0", "0"), ("-5", "5"), ("7", "7"), ("1000", "1,000"), ("3", "3.0")]
    pairs += [("\\dfrac{1}{2}", "\\frac{1}{2}"), ("x = 5", "x=5"), ("12", "13")]
    responses, golds = [wrap(a) for a, _ in pairs], [g for _, g in pairs]
    strict = Grader(timeout_s=5.0, processes=1, short_circuit=False)
    try:
        expected = strict.grade_batch(responses, golds)
    finally:
        strict.close()
    assert grader.grade_batch(responses, golds) == expected
    assert expected[:4] == [1, 1, 0, 1]


def test_multi_part_boxes_count_together(grader):
    resp = "<think>x</think> The roots are $\\boxed{3}$ and $\\boxed{5}$."
    assert extract_boxed(resp) == (["3", "5"], None)
    assert grader.grade(resp, "3, 5") == 1
    assert grader.grade(resp, "(3, 5)") == 1  # math-verify reads a pair of boxes as a set
    # A box separated by prose is an earlier attempt, not a part: only the last box counts.
    resp2 = "<think>x</think> First \\boxed{4}. Wait, recheck: so \\boxed{5}"
    assert extract_boxed(resp2) == (["5"], None)
    assert grader.grade(resp2, "5") == 1


def test_format_failures(grader):
    results = grader.grade_batch_results(
        [
            "I think \\boxed{5}",  # reasoning never closed
            "<think>long reasoning, cut off at the length limit \\boxed{5",  # truncated
            "<think>x</think> the answer is 5",  # no box: math-verify alone would credit it
            "<think>\\boxed{5}</think> so it is five",  # box only inside the reasoning
            "<think>x</think> \\boxed{5",  # last box never closes
        ],
        ["5"] * 5,
    )
    assert [r.score for r in results] == [0] * 5
    assert [r.reason for r in results] == [
        "no_think_close",
        "no_think_close",
        "no_boxed",
        "no_boxed",
        "no_boxed",
    ]


def test_non_thinking_mode():
    g = Grader(thinking=False, timeout_s=2.0, processes=1)
    try:
        assert g.grade("Clearly \\boxed{\\frac{1}{2}}", "0.5") == 1
        assert g.grade("the answer is 0.5", "0.5") == 0
    finally:
        g.close()


def test_unparseable_gold_is_none_and_counted(grader):
    before = grader.counts["gold_unparseable"]
    scores = grader.grade_batch([wrap("5"), wrap("5"), wrap("5")], ["", None, "\\frac{"])
    assert scores == [None, None, None]
    assert grader.counts["gold_unparseable"] - before == 3


def test_list_gold_means_alternatives(grader):
    gold = ["0.01\n", "0.02\n"]
    assert grader.grade_batch([wrap("0.02"), wrap("0.01"), wrap("0.03")], [gold] * 3) == [1, 1, 0]


def test_timeout_holds_in_thread():
    """A hopeless comparison from a non-main thread returns within the bound (+ grace), as 0."""
    g = Grader(timeout_s=1.0, processes=1)
    out = []
    resp = wrap("9^{9^{9^{9^{9}}}}")
    try:
        g.warm_up()  # start-up (once per process) is not part of the per-sample bound
        t = threading.Thread(target=lambda: out.append(g.grade_batch_results([resp], ["3"])))
        t0 = time.monotonic()
        t.start()
        t.join(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        g.close()
    assert out and out[0][0].score == 0
    assert out[0][0].reason in {"timeout", "wrong"}
    # The bound is the worker's CPU time (1 s); on a loaded machine a starved worker may take up
    # to the wall-clock backstop before it is killed (WALL_BACKSTOP x the bound, + grace).
    assert elapsed < WALL_BACKSTOP * (1.0 + g.pool.grace_s)


def test_killed_worker_is_replaced():
    """The hard bound: a worker stuck in C code is killed and the next answer still grades."""
    g = Grader(timeout_s=0.5, processes=1)
    g.pool.soft_timeout_s = 60.0  # disable the worker's own timer: only the kill can stop it
    try:
        t0 = time.monotonic()
        res = g.grade_batch_results([wrap("9^{9^{9^{9}}}"), wrap("3")], ["3", "3"])
        elapsed = time.monotonic() - t0
    finally:
        g.close()
    assert [(r.score, r.reason) for r in res] == [(0, "timeout"), (1, "correct")]
    assert g.pool.kills == 1
    # The bound is CPU time (issue 13.5): ~1 s on an idle machine, at most the wall backstop.
    assert res[0].seconds < WALL_BACKSTOP * (0.5 + g.pool.grace_s) and elapsed < 30


@pytest.mark.parametrize(
    "junk",
    [
        "9^" * 200 + "9",
        "{" * 5000,
        "\\frac{" * 500 + "1" + "}" * 500,
        "x" * 100_000,
        "\ud800\udfff\x00\x7f" * 100,
        "\\boxed{" * 1000,
    ],
)
def test_adversarial_returns_quickly(junk, grader):
    t0 = time.monotonic()
    score = grader.grade(f"<think>{junk}</think> \\boxed{{{junk}}} {junk}", "5")
    assert score == 0
    # CPU-time bound (issue 13.5): timeout_s + 1.5 s idle; on a loaded machine up to the backstop
    assert time.monotonic() - t0 < WALL_BACKSTOP * (grader.timeout_s + grader.pool.grace_s)


def test_bytes_and_non_text_responses(grader):
    assert grader.grade(b"<think>x</think> \\boxed{5}\xff", "5") == 1
    assert grader.grade_batch_results([None], ["5"])[0].reason == "error"


def test_grade_function_and_reward_fn():
    assert grade(wrap("\\frac{4}{2}"), 2.0) == 1
    fn = make_reward_fn()
    assert fn.__name__ == "polaris_correct"
    plain = fn(prompts=["p", "p"], completions=[wrap("2"), wrap("3")], answer=["2", "2"])
    assert plain == [1.0, 0.0]
    conv = [[{"role": "assistant", "content": wrap("2")}]]
    assert fn(prompts=[[{"role": "user", "content": "p"}]], completions=conv, answer=["2"]) == [1.0]
    assert fn(prompts=["p"], completions=[wrap("2")], answer=[""]) == [None]
    with pytest.raises(KeyError, match="answer"):
        fn(prompts=["p"], completions=[wrap("2")], solution=["2"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="timeout_s"):
        Grader(timeout_s=0)
    with pytest.raises(ValueError, match="golds"):
        Grader(processes=1).grade_batch(["a"], [])


def _grade_in_child(g: Grader, q) -> None:
    q.put(g.grade(wrap("\\frac{6}{2}"), "3"))


def test_usable_in_forked_child(grader):
    """A fork (e.g. a DataLoader worker) gets a fresh pool, not the parent's threads and pipes."""
    import multiprocessing as mp

    assert grader.grade(wrap("\\frac{6}{2}"), "3") == 1  # the parent's pool is running
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_grade_in_child, args=(grader, q))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == 0 and q.get(timeout=1) == 1
    assert grader.grade(wrap("3"), "3") == 1  # and the parent's still works


def test_gold_with_several_dollar_spans_is_not_mangled():
    from polaris_lib.grading.extract import normalize_gold

    assert normalize_gold("$69$,$84$") == ("$69$,$84$",)
    assert normalize_gold("$5$") == ("5",)


def test_reward_fn_accepts_any_alternative_form_from_the_answers_column():
    import numpy as np

    from polaris_lib.grading.grader import make_reward_fn

    fn = make_reward_fn()
    out = fn(
        prompts=["p", "p"],
        completions=["<think>.</think> \\boxed{0.02}", "<think>.</think> \\boxed{0.03}"],
        answer=["0.01", "0.01"],
        answers=[np.array(["0.01", "0.02"]), ["0.01", "0.02"]],
    )
    assert out == [1.0, 0.0]


def _count_submissions(g: Grader) -> list:
    """Record every job the grader hands to its pool (the jobs still run)."""
    sent, submit = [], g.pool.submit

    def spy(job):
        sent.append((job.golds, list(job.answers)))
        submit(job)

    g.pool.submit = spy
    return sent


def test_repeated_answers_are_verified_once_per_distinct_string():
    g = Grader(timeout_s=5.0, processes=1)
    sent = _count_submissions(g)
    answers = ["0.5"] * 4 + ["\\frac{2}{4}"] * 3 + ["0.25"]
    try:
        scores = g.grade_batch([wrap(a) for a in answers], ["\\frac{1}{2}"] * 8)
        assert scores == [1] * 7 + [0]
        assert sorted(a for _, ans in sent for a in ans) == sorted(
            "\\boxed{" + a + "}" for a in {"0.5", "\\frac{2}{4}", "0.25"}
        )
        sent.clear()  # the same batch again: verdicts and the gold's parse are cached
        assert g.grade_batch([wrap(a) for a in answers], ["\\frac{1}{2}"] * 8) == scores
        assert sent == []
    finally:
        g.close()


def test_batch_with_nothing_for_math_verify_skips_the_pool():
    """Integer golds with integer, exact or unboxed answers never reach a worker."""
    g = Grader(timeout_s=5.0, processes=1)
    sent = _count_submissions(g)
    resp = [wrap("42"), wrap("41"), "<think>x</think> 42", wrap("-7")]
    try:
        assert g.grade_batch(resp, ["42", "42", "42", "-7"]) == [1, 0, 0, 1]
        assert sent == [] and g.pool._threads == []  # not even started
    finally:
        g.close()


def test_hanging_answer_in_a_chunk_times_out_alone():
    """One answer stuck in C code is killed; the rest of its chunk is graded by a fresh worker."""
    g = Grader(timeout_s=0.5, processes=1, short_circuit=False)
    g.pool.soft_timeout_s = 60.0  # only the parent's kill can stop the stuck answer
    sent = _count_submissions(g)
    answers = ["1+2", "9^{9^{9^{9}}}", "\\frac{6}{2}", "4"]
    try:
        res = g.grade_batch_results([wrap(a) for a in answers], ["3"] * 4)
    finally:
        g.close()
    assert len(sent) == 1 and len(sent[0][1]) == 4  # one chunk, one round trip to start
    assert [(r.score, r.reason) for r in res] == [
        (1, "correct"),
        (0, "timeout"),
        (1, "correct"),
        (0, "wrong"),
    ]
    assert g.pool.kills == 1


def test_jobs_are_submitted_longest_first():
    """LaTeX golds (slow to verify) are queued before integer golds, so no worker idles at the end."""
    g = Grader(timeout_s=5.0, processes=1)
    sent = _count_submissions(g)
    resp = [wrap("\\frac{84}{2}"), wrap("x = \\sqrt{2}"), wrap("\\frac{14}{2}")]
    try:
        assert g.grade_batch(resp, ["42", "\\sqrt{2}", "7"]) == [1, 1, 1]
    finally:
        g.close()
    assert [golds for golds, _ in sent][0] == ("\\sqrt{2}",)


# --- issue 13: fork, start-up failure, load, short-circuit, gold types, multi-part answers ---


def _grade_new_pair_in_child(g: Grader, q) -> None:
    q.put(g.grade(wrap("\\frac{22}{2}"), "11"))  # a pair the parent never graded: needs a worker


@pytest.mark.parametrize("how", ["mp_fork", "os_fork"])
def test_forked_child_grades_a_new_pair(how):
    """After the parent has graded, a forked child grading a NEW pair gets its own pool (issue 13.3)."""
    import multiprocessing as mp

    g = Grader(timeout_s=2.0, processes=1)
    try:
        assert g.grade(wrap("\\frac{6}{2}"), "3") == 1  # the parent's pool and forkserver run
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        if how == "mp_fork":
            p = ctx.Process(target=_grade_new_pair_in_child, args=(g, q))
            p.start()
            p.join(timeout=60)
            alive, code = p.is_alive(), p.exitcode
            if alive:
                p.kill()
        else:
            pid = os.fork()
            if pid == 0:  # the child: grade, report, leave without running pytest's teardown
                try:
                    _grade_new_pair_in_child(g, q)
                    q.close()
                    q.join_thread()
                finally:
                    os._exit(0)
            deadline = time.monotonic() + 60
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            alive, code = done[0] == 0, os.waitstatus_to_exitcode(done[1]) if done[0] else None
            if alive:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        assert not alive, "the forked child hung grading a new pair"
        assert code == 0 and q.get(timeout=5) == 1
        assert g.grade(wrap("\\frac{33}{3}"), "11") == 1  # and the parent's pool still works
    finally:
        g.close()


NO_MAIN_GUARD = """
import sys
from polaris_lib.grading.grader import Grader

g = Grader(timeout_s=5.0, processes=1)
print("score", g.grade("<think>x</think> \\\\boxed{\\\\frac{6}{2}}", "3"), flush=True)
sys.exit(3)
"""


def test_script_without_main_guard_fails_clearly_or_grades(tmp_path):
    """A script with no main guard, ending in sys.exit, never hangs and never scores 0 silently."""
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text(NO_MAIN_GUARD)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    try:
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a script without a main guard hung in the grader")
    printed = [line for line in out.stdout.splitlines() if line.startswith("score")]
    if printed:  # graded: correctly, once, by the script itself
        assert printed == ["score 1"] and out.returncode == 3
    else:
        assert "WorkerStartupError" in out.stderr and 'if __name__ == "__main__":' in out.stderr
        assert str(script) in out.stderr


def test_worker_time_bound_counts_cpu_not_wall():
    """Waiting (as on a loaded machine) does not use up the worker's bound (issue 13.5)."""
    import signal

    from polaris_lib.grading import worker

    old = {s: signal.signal(s, worker._on_alarm) for s in (signal.SIGALRM, signal.SIGPROF)}
    try:
        assert worker._timed(lambda: time.sleep(0.6) or 7, 0.2) == (7, None)
        assert worker._timed(lambda: sum(range(10**9)), 0.2) == (None, "timeout")
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_starved_worker_keeps_its_verdict():
    """A worker that gets no CPU for longer than the bound (SIGSTOP: load taken to the extreme)
    is not killed; its correct answer still scores 1, and no timeout is counted."""
    import signal

    g = Grader(timeout_s=0.5, processes=1, short_circuit=False).warm_up()
    out = []
    try:
        pid = g.pool._workers[0].proc.pid
        os.kill(pid, signal.SIGSTOP)
        t = threading.Thread(target=lambda: out.append(g.grade_batch_results([wrap("6/2")], ["3"])))
        t.start()
        time.sleep(2.5)  # > timeout_s + grace_s of wall time, no CPU time
        with contextlib.suppress(ProcessLookupError):  # before the fix it was killed
            os.kill(pid, signal.SIGCONT)
        t.join(timeout=30)
    finally:
        g.close()
    assert [(r.score, r.reason) for r in out[0]] == [(1, "correct")]
    assert g.pool.kills == 0 and g.counts["timeout"] == 0


SHORT_CIRCUIT_TRAPS = [
    ("1 2 3", "123"),
    ("\\left3", "3"),
    ("1\\;2", "12"),
    ("1\\,000", "1000"),
    ("x = 5", "x=5"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("$3$", "3"),
    ("3.", "3"),
    ("\\frac{0}{0}", "\\frac{0}{0}"),
    ("\\text{yes}", "\\text{yes}"),
    ("1 2 3", "1 2 3"),
    ("\\left3", "\\left3"),
    ("x^2", "x^2"),
    ("7", "7"),
]


def test_short_circuit_gives_math_verifys_verdicts():
    """short_circuit=True and short_circuit=False agree on strings the old normaliser merged."""
    responses = [wrap(a) for a, _ in SHORT_CIRCUIT_TRAPS]
    golds = [g for _, g in SHORT_CIRCUIT_TRAPS]
    fast, strict = (
        Grader(timeout_s=5.0, processes=1),
        Grader(timeout_s=5.0, processes=1, short_circuit=False),
    )
    try:
        expected = strict.grade_batch(responses, golds)
        assert fast.grade_batch(responses, golds) == expected
        assert fast.grade_batch(responses, golds) == expected  # again, gold verdicts now cached
    finally:
        fast.close()
        strict.close()
    assert expected[:3] == [0, 0, 0]  # the examples: math-verify rejects them


def test_gold_types_are_validated(grader):
    from decimal import Decimal

    assert normalize_gold(10**5000) == ()
    assert normalize_gold(10**50) == (str(10**50),)
    assert normalize_gold(b"5") == ("5",) and normalize_gold(b"\xff") == ()
    assert normalize_gold([b"5", 5.0, "$5$"]) == ("5",)
    assert normalize_gold(np.array("7")) == ("7",)
    assert grader.grade(wrap("5"), 10**5000) is None
    assert grader.grade(wrap("5"), b"5") == 1
    for bad in ({"answer": "5"}, {5}, Decimal("5"), object(), [["5"]]):
        with pytest.raises(TypeError, match="gold"):
            normalize_gold(bad)
        with pytest.raises(TypeError, match="gold"):
            grader.grade(wrap("5"), bad)


MULTI_PART = [
    ("\\boxed{(1, 4)} \\text{ and } \\boxed{(5, 3)}", "(1, 4), (5, 3)", ["(1, 4)", "(5, 3)"]),
    ("So $\\boxed{a = 7}$ and $\\boxed{b = 2}$.", "a = 7, b = 2", ["a = 7", "b = 2"]),
    ("The roots are $x = \\boxed{2}$ and $x = \\boxed{-3}$.", "2, -3", ["2", "-3"]),
    ("x=\\boxed{2} \\quad \\text{or} \\quad x=\\boxed{-3}", "-3, 2", ["2", "-3"]),
    ("$x_1 = \\boxed{1}$, $x_2 = \\boxed{4}$", "1, 4", ["1", "4"]),
]


@pytest.mark.parametrize("response, gold, parts", MULTI_PART)
def test_multi_part_answers_boxed_separately(response, gold, parts, grader):
    """Each part in its own box: all boxes of the final answer count, as math-verify extracts them."""
    from math_verify import parse, verify

    text = "<think>x</think> " + response
    assert extract_boxed(text) == (parts, None)
    assert grader.grade(text, gold) == 1
    whole = verify(parse("\\boxed{" + gold + "}"), parse(response), timeout_seconds=None)
    assert whole  # math-verify on the response itself agrees


def test_single_answer_still_takes_the_last_box(grader):
    for resp in ["\\boxed{4}. Wait, recheck: so \\boxed{5}", "\\boxed{4} is wrong, so \\boxed{5}"]:
        assert extract_boxed("<think>x</think> " + resp) == (["5"], None)
        assert grader.grade("<think>x</think> " + resp, "5") == 1
