"""A second, independent grading rule that audits the reward's verdicts (RECIPE §7-8).

The kit's rule (the training reward, `grader.py`) credits a thinking model's response only when it
closes its reasoning with ``</think>`` and the boxed answer after it (with the boxes joined to
it) is equivalent to the gold. The audit regrades every evaluated response with the authors' own
evaluation rule: the last ``\\boxed{...}`` anywhere in the response, no ``</think>`` required.
Both rules decide equivalence with math-verify inside the grader's killable worker pool, so the
audit has the reward's time bound and never executes model output. The training reward is not
changed by any of this: the audit only reports where the two rules disagree, and why.
"""

from __future__ import annotations

import pandas as pd

from polaris_lib.grading.extract import MAX_ANSWER_CHARS, NO_BOXED, TOO_LONG, _box_spans
from polaris_lib.grading.extract import extract_boxed as _extract
from polaris_lib.grading.grader import default_grader

KIT_RULE = (
    "kit rule (the training reward): </think> required, the boxed answer after it, math-verify"
)
AUTHORS_RULE = "authors' rule: the last \\boxed{} anywhere, no </think> required, math-verify"
AUDIT_COLUMNS = [
    "checkpoint",
    "benchmark",
    "problem_id",
    "sample_idx",
    "answers",
    "kit_answer",
    "kit_correct",
    "kit_reason",
    "authors_answer",
    "authors_correct",
    "authors_reason",
    "truncated",
]
"""Columns of the disagreement table (answers: the gold forms)."""


def kit_rule_name(thinking: bool) -> str:
    """The kit's rule as a protocol names it (thinking models need the closed reasoning)."""
    think = "</think> required" if thinking else "no </think> (non-thinking model)"
    return f"kit rule: boxed answer, {think}, math-verify"


def authors_answer(text: str) -> tuple[str | None, str | None]:
    """(the last closed \\boxed{} of the whole response, None) or (None, why there is none).

    >>> authors_answer("\\\\boxed{1} no think close, then \\\\boxed{2}")
    ('2', None)
    """
    spans = [s for s in _box_spans(text or "") if s[1] >= 0]
    if not spans:
        return None, NO_BOXED
    start, end = spans[-1]
    part = text[text.index("{", start) + 1 : end - 1].strip()
    if not part:
        return None, NO_BOXED
    if len(part) > MAX_ANSWER_CHARS:
        return None, TOO_LONG
    return part, None


def _kit_answer(text: str, thinking: bool) -> str | None:
    parts, _ = _extract(text or "", thinking)
    return None if parts is None else ", ".join(parts)


def audit(responses: pd.DataFrame, thinking: bool = True, grader=None) -> pd.DataFrame:
    """Every response with both verdicts: the kit's (its `correct` / `reason`) and the authors'.

    The authors' answer is handed to math-verify as that one box (`Grader(thinking=False)`), so
    math-verify sees exactly the answer the authors' rule extracts.
    """
    missing = {"text", "answers", "correct", "reason"} - set(responses.columns)
    if missing:
        raise KeyError(f"audit needs columns {sorted(missing)}; has {list(responses.columns)}")
    g = grader or default_grader(thinking=False)
    found = [authors_answer(t) for t in responses["text"].fillna("")]
    todo = [i for i, (a, _) in enumerate(found) if a is not None]
    results = g.grade_batch_results(
        ["\\boxed{" + found[i][0] + "}" for i in todo],
        [list(responses["answers"].iloc[i]) for i in todo],
    )
    score: list[float | None] = [0.0] * len(found)
    reason = [why for _, why in found]
    for i, r in zip(todo, results, strict=True):
        score[i], reason[i] = (None if r.score is None else float(r.score)), r.reason
    keys = [c for c in ("checkpoint", "benchmark", "problem_id", "sample_idx") if c in responses]
    out = responses[keys].copy()
    out["answers"] = list(responses["answers"])
    out["kit_answer"] = [_kit_answer(t, thinking) for t in responses["text"]]
    out["kit_correct"] = pd.to_numeric(responses["correct"], errors="coerce").to_numpy()
    out["kit_reason"] = responses["reason"].to_numpy()
    out["authors_answer"] = [a for a, _ in found]
    out["authors_correct"] = pd.to_numeric(pd.Series(score, dtype=object), errors="coerce").values
    out["authors_reason"] = reason
    out["truncated"] = responses["truncated"].to_numpy() if "truncated" in responses else False
    return out


def disagreements(audited: pd.DataFrame) -> pd.DataFrame:
    """The rows where both rules gave a verdict and the verdicts differ."""
    both = audited["kit_correct"].notna() & audited["authors_correct"].notna()
    rows = audited[both & (audited["kit_correct"] != audited["authors_correct"])]
    return rows[[c for c in AUDIT_COLUMNS if c in rows]].reset_index(drop=True)


def agreement(audited: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Agreement rate of the two rules per group (default: checkpoint, benchmark).

    kit_only: credited by the kit's rule only; authors_only: by the authors' rule only (typically
    a box written inside unfinished reasoning, which the reward refuses).
    """
    by = by or [c for c in ("checkpoint", "benchmark") if c in audited]
    both = audited[audited["kit_correct"].notna() & audited["authors_correct"].notna()]
    rows = []
    for key, g in both.groupby(by, sort=False):
        kit, auth = g["kit_correct"], g["authors_correct"]
        rows.append(
            dict(
                zip(by, key if isinstance(key, tuple) else (key,), strict=True),
                graded=len(g),
                agreement=float((kit == auth).mean()),
                kit_only=int(((kit == 1) & (auth == 0)).sum()),
                authors_only=int(((kit == 0) & (auth == 1)).sum()),
                kit_avg=float(kit.mean()),
                authors_avg=float(auth.mean()),
            )
        )
    cols = [*by, "graded", "agreement", "kit_only", "authors_only", "kit_avg", "authors_avg"]
    return pd.DataFrame(rows, columns=cols)
