"""Grader worst case: >= 1,000 adversarial responses; max wall time per sample and survival.

Categories: huge powers/factorials, deep nesting, 100 KB outputs, unbalanced braces, non-UTF8 and
surrogate junk, random LaTeX token soup, heavy sympy constructs, adversarial golds. Every sample is
graded in one batch (per-sample time measured around its math-verify work, plus the parent's
extraction), and a stratified subset again one call at a time from a non-main thread (end-to-end
wall per call, the number a training loop sees). Then the same hostile inputs (a stratified
subset) are graded again in a child forked after the parent has graded (os.fork: the child must
start its own pool) and in a script with no ``if __name__ == "__main__":`` guard that ends in
``sys.exit`` (it must finish within a bound: graded, or one clear WorkerStartupError). Writes
benchmarks/results/grader_adversarial.json.

    .venv/bin/python benchmarks/grader_adversarial.py [--timeout 1.0] [--n 1050] [--elsewhere 70]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from polaris_lib.artifacts import write_json
from polaris_lib.grading.grader import Grader, extract_boxed

OUT = Path(__file__).parent / "results" / "grader_adversarial.json"
TOKENS = r"\frac{ } { ^ _ \sqrt{ \sum_{ \int \left( \right) \begin{matrix} \end{matrix} & \\ x y 9 0 . , = + - \cdot \infty \pi \text{ \boxed{ $ \lim_{ !".split()


def towers(rng: random.Random) -> str:
    base, h = rng.choice([2, 3, 7, 9, 10, 99]), rng.randint(3, 7)
    s = str(base)
    for _ in range(h):
        s = f"{rng.choice([base, rng.randint(2, 999)])}^{{{s}}}"
    return rng.choice([s, f"({s})!", f"{s} - {s}", f"\\binom{{{s}}}{{{rng.randint(2, 99)}}}"])


def nesting(rng: random.Random) -> str:
    d = rng.randint(50, 3000)
    kind = rng.randrange(4)
    if kind == 0:
        return "\\frac{" * d + "1" + "}{2}" * d
    if kind == 1:
        return "(" * d + "x" + ")" * d
    if kind == 2:
        return "\\sqrt{" * d + "2" + "}" * d
    return "{" * d + str(d) + "}" * rng.randint(0, d)


def long_text(rng: random.Random) -> str:
    size = rng.choice([10_000, 50_000, 100_000])
    unit = rng.choice(["x", "1+", "\\boxed{1}", "a b c d ", "\\frac{1}{2}"])
    return (unit * (size // len(unit) + 1))[:size]


def unbalanced(rng: random.Random) -> str:
    n = rng.randint(1, 2000)
    return rng.choice(
        ["\\boxed{" * n, "}" * n + "\\boxed{5", "\\left(" * n, "{" * n + "}" * (n // 2)]
    )


def junk_bytes(rng: random.Random) -> str:
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(10, 5000)))
    text = raw.decode("utf-8", errors=rng.choice(["surrogateescape", "replace", "ignore"]))
    return text + rng.choice(["\ud800", "\udfff", "\x00", "\u202e", ""]) * rng.randint(1, 50)


def soup(rng: random.Random) -> str:
    return " ".join(rng.choice(TOKENS) for _ in range(rng.randint(5, 400)))


def heavy(rng: random.Random) -> str:
    n = rng.randint(5, 12)
    matrix = " \\\\ ".join(" & ".join("x" for _ in range(n)) for _ in range(n))
    return rng.choice(
        [
            f"\\sum_{{k=1}}^{{10^{{{n}}}}} k^{{{n}}}",
            f"\\int_0^{{{n}}} e^{{x^{{{n}}}}} dx",
            f"\\prod_{{k=1}}^{{10^{{{n}}}}} (1+\\frac{{1}}{{k}})",
            f"x^{{x^{{x^{{x^{{{n}}}}}}}}} = y",
            f"\\begin{{pmatrix}}{matrix}\\end{{pmatrix}}^{{{n * 100}}}",
            f"{n}!!!!!!!!",
            f"10^{{10^{{{n}}}}} \\bmod 7",
        ]
    )


CATEGORIES = {
    "towers": towers,
    "nesting": nesting,
    "long": long_text,
    "unbalanced": unbalanced,
    "junk_bytes": junk_bytes,
    "soup": soup,
    "heavy": heavy,
}


def build(n: int, seed: int = 0) -> list[tuple[str, str, object]]:
    """(category, response, gold) triples; every 10th sample also uses an adversarial gold."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cat = list(CATEGORIES)[i % len(CATEGORIES)]
        x = CATEGORIES[cat](rng)
        wrap = rng.randrange(4)
        resp = [
            f"<think>{x}</think> The answer is \\boxed{{{x}}}",
            f"<think>ok</think> \\boxed{{{x}}}",
            f"<think>{x[:500]}</think> {x}",
            f"{x}</think>{x}\\boxed{{{x}}}",
        ][wrap]
        gold = CATEGORIES[rng.choice(list(CATEGORIES))](rng)[:3000] if i % 10 == 9 else "5"
        out.append((cat, resp, gold))
    return out


def in_forked_child(grader: Grader, cases: list, limit_s: float) -> dict:
    """Grade cases in a child forked from this (grading) process; its verdicts come back by pipe."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: a fresh pool of its own, then report and leave
        code = 0
        try:
            os.close(r)
            res = grader.grade_batch_results([c[1] + "  " for c in cases], [c[2] for c in cases])
            with os.fdopen(w, "wb") as f:
                pickle.dump([(x.score, x.reason) for x in res], f)
        except BaseException:  # noqa: BLE001 - whatever happens, the child must exit
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        deadline = time.monotonic() + limit_s
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return {"finished": False, "seconds": round(time.perf_counter() - t0, 1)}
            time.sleep(0.05)
        data = f.read()
    verdicts = pickle.loads(data) if data else []
    return {
        "finished": True,
        "graded": len(verdicts),
        "seconds": round(time.perf_counter() - t0, 1),
        "reasons": dict(Counter(v[1] for v in verdicts)),
    }


NO_GUARD = """
import json, sys
sys.path.insert(0, {root!r})
from polaris_lib.grading.grader import Grader
cases = json.load(open({cases!r}))
res = Grader(timeout_s={timeout!r}).grade_batch_results([c[0] for c in cases], [c[1] for c in cases])
print("REASONS", json.dumps([r.reason for r in res]), flush=True)
sys.exit(0)
"""


def in_script_without_main_guard(cases: list, timeout: float, limit_s: float) -> dict:
    """Grade cases from a script with no main guard: it must end within limit_s, graded or clear."""
    with tempfile.TemporaryDirectory() as tmp:
        data, script = Path(tmp) / "cases.json", Path(tmp) / "no_guard.py"
        data.write_text(json.dumps([[c[1], c[2]] for c in cases]))
        root = str(Path(__file__).resolve().parents[1])
        script.write_text(NO_GUARD.format(root=root, cases=str(data), timeout=timeout))
        t0 = time.perf_counter()
        try:
            out = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, timeout=limit_s
            )
        except subprocess.TimeoutExpired:
            return {"finished": False, "seconds": round(time.perf_counter() - t0, 1)}
    lines = [x for x in out.stdout.splitlines() if x.startswith("REASONS ")]
    reasons = json.loads(lines[-1][8:]) if lines else []
    err = out.stderr.strip().splitlines()
    return {
        "finished": True,
        "seconds": round(time.perf_counter() - t0, 1),
        "returncode": out.returncode,
        "graded": len(reasons),
        "reasons": dict(Counter(reasons)),
        "clear_error": next((x[:400] for x in reversed(err) if "WorkerStartupError:" in x), None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1050)
    ap.add_argument("--timeout", type=float, default=1.0, help="the grader's bound, seconds")
    ap.add_argument("--single", type=int, default=100, help="samples re-graded one call at a time")
    ap.add_argument(
        "--elsewhere", type=int, default=70, help="samples graded in a fork and a guardless script"
    )
    args = ap.parse_args()
    cases = build(args.n)
    grader = Grader(timeout_s=args.timeout).warm_up()

    extract_s = []
    for _, resp, _ in cases:  # the parent's share of the work, per sample
        t0 = time.perf_counter()
        extract_boxed(resp)
        extract_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    results = grader.grade_batch_results([c[1] for c in cases], [c[2] for c in cases])
    batch_s = time.perf_counter() - t0
    per_sample = [r.seconds + e for r, e in zip(results, extract_s, strict=True)]

    # One call at a time from a non-main thread: end-to-end wall, the case SIGALRM cannot cover.
    subset = cases[:: max(1, len(cases) // args.single)][: args.single]
    walls: list[float] = []

    def one_by_one() -> None:
        for _, resp, gold in subset:
            t = time.perf_counter()
            grader.grade(resp + " ", gold)  # a changed string: no verdict-cache hit
            walls.append(time.perf_counter() - t)

    th = threading.Thread(target=one_by_one)
    th.start()
    th.join()

    elsewhere = cases[:: max(1, len(cases) // args.elsewhere)][: args.elsewhere]
    limit_s = 180.0
    forked = in_forked_child(grader, elsewhere, limit_s)
    guardless = in_script_without_main_guard(elsewhere, args.timeout, limit_s)

    by_cat: dict[str, list[float]] = defaultdict(list)
    for (cat, _, _), s in zip(cases, per_sample, strict=True):
        by_cat[cat].append(s)
    result = {
        "samples": len(cases),
        "bound_s": args.timeout,
        "target_s": args.timeout + 1.0,
        "processes": grader.pool.processes,
        "load_avg": round(os.getloadavg()[0], 1),
        "max_seconds_per_sample_batch": round(max(per_sample), 3),
        "max_parent_extract_seconds": round(max(extract_s), 4),
        "max_wall_per_call_thread": round(max(walls), 3),
        "single_calls": len(walls),
        "within_target": max(per_sample) <= args.timeout + 1.0 and max(walls) <= args.timeout + 1.0,
        "batch_seconds": round(batch_s, 2),
        "workers_killed": grader.pool.kills,
        "reasons": dict(Counter(r.reason for r in results)),
        "max_seconds_by_category": {k: round(max(v), 3) for k, v in sorted(by_cat.items())},
        "credited": sum(r.score or 0 for r in results),
        "credited_note": "junk that still ends in a well-formed \\boxed{5} after </think> "
        "(e.g. '}}}...\\boxed{5' inside the wrapper's box) is correctly credited",
        "credited_examples": [
            {"category": c[0], "response": c[1][:120], "gold": str(c[2])[:120]}
            for c, r in zip(cases, results, strict=True)
            if r.score
        ][:8],
        "process_survived": True,  # this line runs only if the grading process is still alive
        "limit_elsewhere_s": limit_s,
        "forked_child": forked,
        "script_without_main_guard": guardless,
    }
    grader.close()
    write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
