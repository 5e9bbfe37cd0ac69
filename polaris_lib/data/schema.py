"""The one schema every dataset is loaded into: normalisation and validation.

Columns: problem_id (str), problem (str, no instruction suffix), answer (str, first accepted
form), answers (list[str], every accepted form), source (str), then extra columns. Validation
reports every bad row by id and reason; nothing is dropped silently.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("problem_id", "problem", "answer", "source")
CORE_COLUMNS = ("problem_id", "problem", "answer", "answers", "source")


def _gsm8k_final(text: str) -> str | None:
    """GSM8K gold: the number after the last '####', thousands commas removed."""
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "")


ANSWER_PARSERS: dict[str, Callable[[str], str | None]] = {"gsm8k": _gsm8k_final}


def _answer_text(value) -> str:
    """One gold value as text: 142.0 -> "142", 0.5 -> "0.5", " 9.6\\n" -> "9.6"."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"unsupported answer type {type(value).__name__}")
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def normalise_answer(value) -> list[str] | None:
    """Gold of any source type -> accepted forms (stripped, deduplicated, in order).

    None/NaN -> None (missing); a list -> its non-empty entries; raises TypeError on other types.
    >>> normalise_answer(142.0), normalise_answer(["11000\\n", "11000"])
    (['142'], ['11000'])
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    values = value.tolist() if isinstance(value, np.ndarray) else value
    values = list(values) if isinstance(values, list | tuple) else [values]
    texts = [_answer_text(v) for v in values if v is not None]
    return list(dict.fromkeys(t for t in texts if t))


def _answer_cells(raw, parser: Callable | None):
    """(answer, answers) of one row; wrong types pass through raw so validation reports them."""
    if parser is not None and isinstance(raw, str):
        raw = parser(raw)
    try:
        alts = normalise_answer(raw)
    except TypeError:
        return raw, []
    if alts is None:
        return None, []
    return (alts[0] if alts else ""), alts


def normalise_frame(rows: pd.DataFrame, parser: Callable | None = None) -> pd.DataFrame:
    """Normalise answers and problems of a frame already holding the schema's columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"frame lacks schema column(s) {missing}; it has {list(rows.columns)}")
    cells = [_answer_cells(a, parser) for a in rows["answer"]]
    out = rows.copy()
    out["answer"] = pd.Series([c[0] for c in cells], index=rows.index, dtype=object)
    out["answers"] = pd.Series([c[1] for c in cells], index=rows.index, dtype=object)
    out["problem"] = [p.strip() if isinstance(p, str) else p for p in rows["problem"]]
    core = ["problem_id", "problem", "answer", "answers", "source"]
    out = out[core + [c for c in out.columns if c not in core]].reset_index(drop=True)
    for col in ("problem_id", "problem", "answer", "source"):
        if all(isinstance(v, str) for v in out[col]):
            out[col] = out[col].astype(str)  # one dtype whatever the reader produced
    return out


def to_schema(
    raw: pd.DataFrame,
    *,
    source: str,
    column_map: dict | None = None,
    id_column: str | None = None,
    answer_parser: str | None = None,
) -> pd.DataFrame:
    """A plain table -> the schema. column_map: schema/extra name -> source column.

    Unmapped source columns are kept; problem_id is "<source>/<id_column value or row>".
    """
    column_map = {"problem": "problem", "answer": "answer", **(column_map or {})}
    missing = sorted({c for c in column_map.values() if c not in raw.columns})
    if missing:
        raise ValueError(
            f"{source}: column(s) {missing} not found; the table has {list(raw.columns)}"
        )
    if id_column and id_column not in raw.columns:
        raise ValueError(
            f"{source}: id column {id_column!r} not found; the table has {list(raw.columns)}"
        )
    out = pd.DataFrame({name: raw[col].to_numpy() for name, col in column_map.items()})
    ids = raw[id_column].tolist() if id_column else range(len(raw))
    # A missing original id stays missing (validation reports it) instead of becoming "src/None".
    out.insert(0, "problem_id", [None if _missing(i) else f"{source}/{i}" for i in ids])
    out["source"] = source
    used = set(column_map.values())
    for col in raw.columns:
        if col not in used and col not in out.columns:
            out[col] = raw[col].to_numpy()
    return normalise_frame(out, ANSWER_PARSERS[answer_parser] if answer_parser else None)


def gold_answers(df: pd.DataFrame) -> list[str | list[str]]:
    """Per row, the gold as the grader takes it: a str, or a list of accepted forms."""
    if "answers" not in df.columns:
        return df["answer"].tolist()
    return [
        a[0] if len(a) == 1 else list(a) if len(a) else ans
        for a, ans in zip(df["answers"], df["answer"], strict=True)
    ]


@dataclass(frozen=True)
class Issue:
    """One problem with one row."""

    row: int
    """Position of the row in the frame."""
    row_id: str
    """The row's problem_id, or "row <position>" when it has none."""
    kind: str
    """missing_problem | empty_problem | missing_answer | empty_answer | missing_id | duplicate_id | wrong_type."""
    detail: str
    """Human-readable reason."""


@dataclass
class ValidationReport:
    """What validate() found in one frame."""

    name: str
    """Dataset name the frame came from."""
    n_rows: int
    """Rows checked."""
    issues: list[Issue] = field(default_factory=list)
    """Every problem found, in row order."""
    missing_columns: list[str] = field(default_factory=list)
    """Required schema columns absent from the frame."""

    @property
    def ok(self) -> bool:
        return not self.issues and not self.missing_columns

    @property
    def bad_rows(self) -> list[int]:
        """Positions of the rows with at least one issue."""
        return sorted({i.row for i in self.issues})

    @property
    def bad_ids(self) -> list[str]:
        """Ids of the rows with at least one issue, in row order."""
        return list(dict.fromkeys(i.row_id for i in sorted(self.issues, key=lambda i: i.row)))

    @property
    def counts(self) -> dict[str, int]:
        """Number of issues of each kind."""
        return dict(Counter(i.kind for i in self.issues))

    def message(self, max_ids: int = 10) -> str:
        """A readable summary: totals per kind and the first max_ids offending rows."""
        if self.missing_columns:
            return f"{self.name}: missing required column(s) {self.missing_columns}"
        if self.ok:
            return f"{self.name}: {self.n_rows} rows, all valid"
        lines = [
            f"{self.name}: {len(self.bad_rows)} of {self.n_rows} rows invalid "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        ]
        shown = self.bad_ids[:max_ids]
        by_id = {}
        for issue in self.issues:
            by_id.setdefault(issue.row_id, []).append(issue.detail)
        lines += [f"  {rid}: {'; '.join(by_id[rid])}" for rid in shown]
        if len(self.bad_ids) > max_ids:
            lines.append(f"  ... and {len(self.bad_ids) - max_ids} more rows")
        return "\n".join(lines)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _text_issues(value, col: str) -> list[tuple[str, str]]:
    """(kind, detail) for a problem/answer cell that is missing, not a str, or blank."""
    if _missing(value):
        return [(f"missing_{col}", f"{col} is missing")]
    if not isinstance(value, str):
        return [("wrong_type", f"{col} is {type(value).__name__}, not str")]
    if not value.strip():
        return [(f"empty_{col}", f"{col} is empty")]
    return []


NON_FINITE = {"inf", "+inf", "-inf", "nan", "+nan", "-nan", "infinity", "+infinity", "-infinity"}
"""Answer texts that are float artifacts (`float('inf')` printed), never a math gold."""


def _not_finite(value) -> bool:
    if isinstance(value, float):
        return math.isinf(value)  # NaN counts as missing
    return isinstance(value, str) and value.strip().lower() in NON_FINITE


def _row_issues(rec: dict) -> list[tuple[str, str]]:
    """Every (kind, detail) for one row, apart from duplicate ids."""
    found = []
    pid = rec["problem_id"]
    if _missing(pid) or (isinstance(pid, str) and not pid.strip()):
        found.append(("missing_id", "problem_id is missing or empty"))
    elif not isinstance(pid, str):
        found.append(("wrong_type", f"problem_id is {type(pid).__name__}, not str"))
    found += _text_issues(rec["problem"], "problem") + _text_issues(rec["answer"], "answer")
    answers = rec.get("answers", [])
    answers = answers.tolist() if isinstance(answers, np.ndarray) else answers
    bad = [a for a in (answers if isinstance(answers, list | tuple) else []) if _not_finite(a)]
    if _not_finite(rec["answer"]) or bad:
        found.append(
            (
                "not_finite_answer",
                f"answer {rec['answer'] if _not_finite(rec['answer']) else bad[0]!r} is not a "
                "finite value (an overflowed number or a conversion artifact), not a gold answer",
            )
        )
    if not isinstance(rec["source"], str):
        found.append(("wrong_type", f"source is {type(rec['source']).__name__}, not str"))
    answers = rec.get("answers", [])
    answers = answers.tolist() if isinstance(answers, np.ndarray) else answers
    if not isinstance(answers, list | tuple) or not all(isinstance(a, str) for a in answers):
        found.append(("wrong_type", "answers is not a list of str"))
    return found


def validate(df: pd.DataFrame, *, name: str) -> ValidationReport:
    """Check a schema frame; rows are reported by problem_id (or position) and reason."""
    report = ValidationReport(name=name, n_rows=len(df))
    report.missing_columns = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if report.missing_columns:
        return report
    first_seen: dict[str, int] = {}
    for pos, rec in enumerate(df.to_dict("records")):
        pid = rec["problem_id"]
        row_id = pid if isinstance(pid, str) and pid.strip() else f"row {pos}"
        for kind, detail in _row_issues(rec):
            report.issues.append(Issue(pos, row_id, kind, detail))
        if isinstance(pid, str) and pid.strip():
            if pid in first_seen:
                detail = f"duplicate problem_id (first at row {first_seen[pid]})"
                report.issues.append(Issue(pos, f"{pid} (row {pos})", "duplicate_id", detail))
            else:
                first_seen[pid] = pos
    return report
