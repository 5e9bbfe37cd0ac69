"""Worker processes that run math-verify under a hard deadline (RECIPE §8, the hardened reward).

math-verify bounds its own work with ``signal.alarm``, which only works in a main thread, and its
``TimeoutException`` is a ``BaseException``. Some sympy work (a huge integer power) runs in C and
ignores signals altogether. So verification runs in small worker processes: each one arms its own
CPU-time timer per task (``ITIMER_PROF``, a soft bound that a busy machine does not shorten), and
the parent kills and replaces any worker that spends more than ``timeout_s + grace_s`` of CPU
time on a task (the hard bound: polaris_lib/grading/pool.py). This module is the worker side: the
per-task timer, math-verify calls and the message loop. Every message ends with the worker's CPU
seconds so far, from which the parent measures the CPU spent on the task in flight.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import OrderedDict

# Reasons a worker reports for one answer.
CORRECT, WRONG, TIMEOUT, ERROR, GOLD_UNPARSEABLE = (
    "correct",
    "wrong",
    "timeout",
    "error",
    "gold_unparseable",
)
_GOLD_CACHE_SIZE = 4096  # golds kept parsed per worker; problems recur across steps and epochs


class _Deadline(BaseException):
    """Raised by the worker's interval timer; a BaseException so library `except Exception` can't eat it."""


def _on_alarm(signum, frame):
    raise _Deadline()


def _timed(fn, timeout_s: float):
    """Run fn() under a bound of timeout_s seconds of this process's CPU time (ITIMER_PROF, SIGPROF,
    handled by ``_on_alarm``); return (value, reason) with reason None on success."""
    try:
        signal.setitimer(signal.ITIMER_PROF, timeout_s)
        try:
            return fn(), None
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _Deadline:
        return None, TIMEOUT
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - RecursionError, MemoryError, math-verify's BaseException
        return None, ERROR


def _parse_gold(golds: tuple[str, ...]) -> list:
    """Parse each acceptable gold form; keep those math-verify understands (gold is boxed as answers are)."""
    from math_verify import parse

    parsed = [parse("\\boxed{" + g + "}", parsing_timeout=None) for g in golds]
    return [p for p in parsed if p]


def _verify_any(gold_parsed: list, answer: str) -> int:
    """1 if the answer matches any acceptable gold form (gold first, as math-verify expects)."""
    from math_verify import parse, verify

    ans = parse(answer, parsing_timeout=None)
    if not ans:
        return 0
    return int(any(verify(g, ans, timeout_seconds=None) for g in gold_parsed))


def _self_verifying(golds: tuple[str, ...], gold_parsed: list) -> frozenset:
    """Gold forms that, boxed as an answer, verify against the gold: the forms for which the
    parent's exact-string short-circuit gives math-verify's own verdict (it sends the same
    ``\\boxed{form}`` string that ``_verify_any`` would judge here)."""
    return frozenset(g for g in golds if _verify_any(gold_parsed, "\\boxed{" + g + "}"))


def worker_main(conn, timeout_s: float, memory_mb: int) -> None:
    """Worker loop: recv (golds, answers); send ('gold', ok, reason, exact_forms, cpu) then
    ('item', score, reason, cpu) per answer."""
    # Our own timer is the bound; math-verify's alarm(0) would cancel it, so its timeouts are off
    # and its "timeout is disabled" warning is expected noise.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    signal.signal(signal.SIGPROF, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cache: OrderedDict[tuple[str, ...], list] = OrderedDict()
    conn.send(
        ("ready", time.process_time())
    )  # the parent's deadlines start only now, after any __main__ re-import
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        golds, answers = msg
        reason = None
        if golds in cache:
            cache.move_to_end(golds)
            gold_parsed, exact = cache[golds]
        else:
            gold_parsed, reason = _timed(lambda g=golds: _parse_gold(g), timeout_s)
            exact = frozenset()
            if gold_parsed:  # a timeout here only forgoes the short-circuit: math-verify decides
                exact = _timed(lambda g=golds, p=gold_parsed: _self_verifying(g, p), timeout_s)[0]
                exact = exact or frozenset()
            if reason is None:  # a timed-out parse may succeed on a calmer machine: not cached
                cache[golds] = (gold_parsed, exact)
            if len(cache) > _GOLD_CACHE_SIZE:
                cache.popitem(last=False)
        conn.send(("gold", bool(gold_parsed), reason, exact, time.process_time()))
        for answer in answers if gold_parsed else ():
            score, reason = _timed(lambda a=answer, g=gold_parsed: _verify_any(g, a), timeout_s)
            if reason is None:
                reason = CORRECT if score else WRONG
            conn.send(("item", score or 0, reason, time.process_time()))
