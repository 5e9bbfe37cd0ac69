"""No training on a test set: a training pool must share no problem with an evaluation benchmark.

Problems are compared by a hash of their normalised text (`problem_key`): Unicode NFKC, lower
case, LaTeX math delimiters ($, \\(, \\), \\[, \\]) and every whitespace removed, so the same
problem copied between sources with other spacing or delimiters still matches. `polaris run`
checks the run's pool against every benchmark it evaluates before step 01, and curation checks
again before it samples (a notebook run alone, or a pool overridden in the notebook).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pandas as pd

from polaris_lib.data.catalog import harness_only, load_dataset, unavailable_reason

_DELIMITERS = re.compile(r"\$|\\[\(\)\[\]]|\s+")


class DataOverlapError(ValueError):
    """The training pool contains problems of an evaluation benchmark."""


def problem_key(text: str) -> str:
    """Hash of a problem's normalised text (see the module docstring).

    >>> problem_key("Find $x$ if  x+1=2.") == problem_key("find \\\\(x\\\\) if x+1=2.")
    True
    """
    norm = _DELIMITERS.sub("", unicodedata.normalize("NFKC", str(text)).lower())
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:16]


def overlaps(pool: pd.DataFrame, benchmarks: dict[str, pd.DataFrame]) -> dict[str, list[tuple]]:
    """{benchmark: [(pool problem_id, benchmark problem_id), ...]} for every shared problem."""
    keys = pool.problem.map(problem_key)
    by_key: dict[str, list[str]] = {}
    for key, pid in zip(keys, pool.problem_id, strict=True):
        by_key.setdefault(key, []).append(str(pid))
    found = {}
    for name, bench in benchmarks.items():
        pairs = [
            (pool_id, str(bid))
            for key, bid in zip(bench.problem.map(problem_key), bench.problem_id, strict=True)
            for pool_id in by_key.get(key, ())
        ]
        if pairs:
            found[name] = pairs
    return found


def check_no_overlap(run, pool: pd.DataFrame, *, data_dir=None) -> None:
    """Refuse (DataOverlapError naming the ids) a pool that shares a problem with any benchmark
    the run evaluates. A benchmark that cannot be loaded here and is only a harness check on the
    toy model is skipped, as step 05 skips it; `check_available` has already refused a run that
    lacks one that matters."""
    benchmarks = {}
    for name in dict.fromkeys(run.eval.benchmarks):
        if harness_only(run, name) and unavailable_reason(name, data_dir) is not None:
            continue
        if name == "toy":
            # The toy test split is drawn like step 05 draws it (the toy splits are disjoint by
            # construction; checked all the same).
            bench = load_dataset("toy", split="test", toy_cfg=run.toy, n=256, seed=run.seed)
        else:
            bench = load_dataset(name, data_dir=data_dir)
        benchmarks[name] = bench
    found = overlaps(pool, benchmarks)
    if found:
        parts = []
        for name, pairs in found.items():
            shown = ", ".join(f"{p} = {b}" for p, b in pairs[:10])
            more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
            parts.append(f"{name}: {len(pairs)} shared ({shown}{more})")
        raise DataOverlapError(
            f"curation.pool {run.curation.pool!r} contains evaluation problems, so the run would "
            f"train on its test set: {'; '.join(parts)}. Choose another pool (-p curation.pool "
            "polaris53k) or drop the benchmark from eval.benchmarks."
        )
