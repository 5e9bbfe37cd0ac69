"""The recipe's reward: binary correctness by math-verify behind a hardened wrapper (RECIPE §8).

A response scores 1 only if (thinking models) it closes its reasoning with ``</think>`` and the
``\\boxed{}`` answer after the last ``</think>`` is equivalent to the gold under math-verify
(gold first). The answer is the last box, together with the boxes directly before it that are
joined to it only by ``,`` / ``and`` / ``or`` / ``$`` (at most 6, as math-verify's own boxed
extraction): ``\\boxed{3}, \\boxed{5}`` is the set {3, 5}, as one multi-part answer.

Gold forms: a str; an int/float (``142.0`` becomes ``"142"``); or a list/array of strings, read as
*alternative acceptable forms* of one answer (Minerva lists e.g. ``["0.01", "0.02"]`` or
``["7.5 \\times 10^7", "7.5 \\times 10^7\\n"]``; OlympiadBench lists hold one string). A multi-part
gold answer is one string, e.g. ``"(3, 5)"`` or ``"$x=1, x=2$"``. A gold no form of which parses
scores ``None`` (counted), never 0.

Math-verify runs in killable worker processes (``grading/pool.py``), so the time bound holds in any
thread; model output is only ever read by math-verify's LaTeX parser, never evaluated as code.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass

from polaris_lib.grading import pool as gp
from polaris_lib.grading.extract import (  # noqa: F401 - re-exported: the reward's public API
    MAX_ANSWER_CHARS,
    NO_BOXED,
    NO_THINK_CLOSE,
    THINK_CLOSE,
    TOO_LONG,
    extract_boxed,
    normalize_gold,
)
from polaris_lib.grading.worker import CORRECT, ERROR, GOLD_UNPARSEABLE, TIMEOUT, WRONG

REASONS = (CORRECT, WRONG, NO_THINK_CLOSE, NO_BOXED, TOO_LONG, TIMEOUT, GOLD_UNPARSEABLE, ERROR)
_VERDICT_CACHE_SIZE = 200_000
_INT = re.compile(r"-?\d{1,1000}")  # bounded: int() of a huge digit string is slow (and capped)


@dataclass(frozen=True)
class GradeResult:
    """One sample's verdict: score 1/0 (None when the gold is unparseable), why, and seconds spent."""

    score: int | None
    reason: str
    seconds: float = 0.0


def _as_text(response) -> str | None:
    if isinstance(response, bytes):
        return response.decode("utf-8", errors="replace")
    return response if isinstance(response, str) else None


class Grader:
    """Batch grader: golds parsed once per worker, exact matches short-circuited, work in processes.

    Short-circuits (no math-verify call per answer, same verdict as math-verify): an answer that is
    exactly a gold form scores 1 when that form, boxed, verifies against the gold (checked once per
    gold in the worker, with its parse); an integer answer against integer golds is compared as
    integers (math-verify's own verdict there). ``short_circuit=False`` turns both off.
    Repeated (gold, answer) pairs are verified once and their verdicts cached.

    Thread-safe; the worker pool starts on first use, is reused, and is shut down at exit.
    ``counts`` tallies every verdict's reason since construction.
    """

    def __init__(
        self,
        thinking: bool = True,
        timeout_s: float = 5.0,
        processes: int | None = None,
        start_method: str = "forkserver",
        chunk_size: int = 16,
        short_circuit: bool = True,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        if processes is not None and processes < 1:
            raise ValueError(f"processes must be >= 1 (or None for one per CPU), got {processes}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.thinking, self.timeout_s, self.chunk_size = thinking, timeout_s, chunk_size
        self.short_circuit = short_circuit  # off: every answer goes through math-verify (tests)
        self.pool = gp.WorkerPool(processes or gp.default_processes(), timeout_s, 0.5, start_method)
        self.counts: Counter[str] = Counter()
        self._gold_ok: dict[tuple[str, ...], bool] = {}
        self._gold_exact: dict[tuple[str, ...], frozenset] = {}  # forms math-verify self-credits
        self._verdicts: dict[tuple[tuple[str, ...], str], int] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> Grader:
        """Start every worker now and wait for them (otherwise the first batch pays start-up)."""
        self.pool.start(wait=True)
        return self

    def grade(self, response: str, gold) -> int | None:
        """Score one response (1, 0, or None for an unparseable gold)."""
        return self.grade_batch([response], [gold])[0]

    def grade_batch(self, responses: list[str], golds: list) -> list[int | None]:
        """Scores for responses[i] against golds[i]."""
        return [r.score for r in self.grade_batch_results(responses, golds)]

    def grade_batch_results(self, responses: list[str], golds: list) -> list[GradeResult]:
        """GradeResult for responses[i] against golds[i]; blocks until every sample is decided."""
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        results: list[GradeResult | None] = [None] * len(responses)
        groups: dict[tuple[str, ...], list[int]] = {}
        pending: dict[tuple[str, ...], list[tuple[int, str, bool]]] = {}
        for i, (resp, gold) in enumerate(zip(responses, golds, strict=True)):
            key = normalize_gold(gold)
            if not key:
                results[i] = GradeResult(None, GOLD_UNPARSEABLE)
                continue
            groups.setdefault(key, []).append(i)
            int_gold = self.short_circuit and all(map(_INT.fullmatch, key))
            if int_gold:  # math-verify parses any integer; no worker needed to learn that
                self._gold_ok.setdefault(key, True)
            text = _as_text(resp)
            parts, reason = (
                extract_boxed(text, self.thinking) if text is not None else (None, ERROR)
            )
            if parts is None:
                results[i] = GradeResult(0, reason)
                continue
            if int_gold and len(parts) == 1 and _INT.fullmatch(parts[0]):
                # integer vs integer: math-verify compares sympy Integers exactly; so do we
                score = int(any(int(parts[0]) == int(g) for g in key))
                results[i] = GradeResult(score, CORRECT if score else WRONG)
                continue
            answer = ", ".join("\\boxed{" + p + "}" for p in parts)
            if (verdict := self._verdicts.get((key, answer))) is not None:
                results[i] = GradeResult(verdict, CORRECT if verdict else WRONG)
                continue
            # Exact match: the one boxed part is a gold form that math-verify credits when boxed
            # as an answer (learned with the gold's parse), i.e. math-verify's own verdict.
            exact = self.short_circuit and len(parts) == 1 and parts[0] in key
            if exact and key in self._gold_exact:  # else tentative: checked once the gold parses
                exact = parts[0] in self._gold_exact[key]
            pending.setdefault(key, []).append((i, answer, exact))
        self._run_jobs(groups, pending, results)
        recheck: dict[tuple[str, ...], list[tuple[int, str, bool]]] = {}
        for key, items in pending.items():  # exact candidates whose gold form did not self-verify
            for i, a, exact in items:
                if (
                    exact
                    and self._gold_ok.get(key)
                    and a[7:-1] not in self._gold_exact.get(key, ())
                ):
                    recheck.setdefault(key, []).append((i, a, False))
                    results[i] = None
        if recheck:
            self._run_jobs({k: [i for i, _, _ in v] for k, v in recheck.items()}, recheck, results)
        with self._lock:
            self.counts.update(r.reason for r in results)
        return results

    def _run_jobs(self, groups, pending, results) -> None:
        """Send to workers what needs math-verify (and unknown golds); fill results in place."""
        done = threading.Semaphore(0)
        jobs = []
        for key in groups:
            items = pending.get(key, [])
            hard: dict[str, list[int]] = {}  # samples often repeat an answer: verify it once
            for i, a, exact in items:
                if not exact:
                    hard.setdefault(a, []).append(i)
            if not hard and key in self._gold_ok:
                continue
            uniq = list(hard.items())
            for c in range(0, max(1, len(uniq)), self.chunk_size):
                chunk = uniq[c : c + self.chunk_size]
                answers, index = [a for a, _ in chunk], [ix for _, ix in chunk]
                jobs.append(gp.Job(key, answers, lambda j: done.release(), index))
        # Longest first: integer golds verify in ~2 ms, LaTeX golds (equations, formulas) in
        # ~30-300 ms; queued last, a long job would leave the other worker idle at the end.
        jobs.sort(key=_job_cost, reverse=True)
        for job in jobs:
            self.pool.submit(job)
        # Bounded wait: start-up, then per answer the CPU bound's wall backstop (gp._recv); a
        # driver always signals, so this bound only guards against a bug, never a slow answer.
        per_answer = gp.WALL_BACKSTOP * (self.timeout_s + self.pool.grace_s)
        limit = gp.STARTUP_TIMEOUT_S + per_answer * (len(jobs) + sum(len(j.answers) for j in jobs))
        for _ in jobs:
            if not done.acquire(timeout=limit):
                raise gp.WorkerStartupError(f"grading did not finish within {limit:.0f} s")
        for job in jobs:
            if job.error is not None:
                raise job.error
        for job in jobs:
            if job.gold_ok is not None:  # None: the worker failed before judging the gold
                self._gold_ok[job.golds] = job.gold_ok
                self._gold_exact[job.golds] = job.gold_exact
            for ix, a, (score, reason, secs) in zip(
                job.index, job.answers, job.results, strict=True
            ):
                if reason in (CORRECT, WRONG):
                    self._remember(job.golds, a, score)
                for i in ix:
                    results[i] = GradeResult(score, reason, secs)
        for key, idx in groups.items():
            gold_ok = self._gold_ok.get(key)
            for i in idx:
                if gold_ok is False:
                    results[i] = GradeResult(None, GOLD_UNPARSEABLE)
                elif gold_ok is None and results[i] is None:  # gold parse failed or timed out
                    results[i] = GradeResult(0, TIMEOUT)
                elif results[i] is None:  # exact match, gold known to parse
                    results[i] = GradeResult(1, CORRECT)

    def _remember(self, key: tuple[str, ...], answer: str, score: int) -> None:
        """Cache a verdict; problems recur across steps and models repeat their answers."""
        with self._lock:
            if len(self._verdicts) >= _VERDICT_CACHE_SIZE:
                self._verdicts.clear()  # crude bound; a refill costs one verify per answer
            self._verdicts[(key, answer)] = score

    def close(self) -> None:
        """Stop the worker processes (they restart if the grader is used again)."""
        self.pool.close()


def _job_cost(job: gp.Job) -> tuple[bool, int]:
    """Rough cost order of a job: a non-integer gold first, then more characters to parse."""
    heavy = not all(map(_INT.fullmatch, job.golds))
    return heavy, sum(map(len, job.answers)) + sum(map(len, job.golds))


_DEFAULT: dict[tuple[bool, float], Grader] = {}
_DEFAULT_LOCK = threading.Lock()


def default_grader(thinking: bool = True, timeout_s: float = 5.0) -> Grader:
    """The process-wide grader for these settings (created once, reused)."""
    with _DEFAULT_LOCK:
        key = (thinking, float(timeout_s))
        if key not in _DEFAULT:
            _DEFAULT[key] = Grader(thinking=thinking, timeout_s=timeout_s)
        return _DEFAULT[key]


def grade(response: str, gold, *, thinking: bool = True, timeout_s: float = 5.0) -> int | None:
    """1 if the boxed final answer matches gold, 0 if not, None if the gold is unparseable.

    >>> grade("<think>1+1</think> The answer is \\\\boxed{\\\\frac{4}{2}}", "2")
    1
    """
    return default_grader(thinking, timeout_s).grade(response, gold)


def _completion_text(completion) -> str:
    """Plain string, or the last assistant message of a conversational completion."""
    if isinstance(completion, str):
        return completion
    for msg in reversed(list(completion)):
        if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant":
            content = msg.get("content", "")
            if isinstance(content, list):  # multimodal-style content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def make_reward_fn(grader: Grader | None = None, thinking: bool = True):
    """TRL reward function reading gold from the dataset's ``answers`` column (every accepted
    form, as polaris_lib.data.catalog writes it) or, failing that, ``answer``.

    >>> fn = make_reward_fn()
    >>> fn(prompts=["1+1?"], completions=["<think>.</think> \\\\boxed{2}"], answer=["2"])
    [1.0]
    """
    g = grader or default_grader(thinking)

    def polaris_correct(prompts, completions, completion_ids=None, **columns) -> list[float | None]:
        if "answer" not in columns:
            raise KeyError(
                f"reward needs an 'answer' column; dataset columns: {sorted(columns)} "
                "(map your gold column to 'answer' in the dataset catalog)"
            )
        texts = [_completion_text(c) for c in completions]
        golds = columns.get("answers") or columns["answer"]  # alternatives (Minerva) when present
        scores = g.grade_batch(texts, [_gold_value(x) for x in golds])
        return [None if s is None else float(s) for s in scores]

    polaris_correct.grader = g
    return polaris_correct


def _gold_value(gold):
    """A list-like gold (numpy array from parquet, list) becomes a list of forms."""
    if hasattr(gold, "tolist") and not isinstance(gold, str):
        gold = gold.tolist()
    return gold
