"""Answer extraction for the reward (RECIPE §8): gold normalisation and the boxed final answer.

Pure string work, no math-verify: what text a response offers as its answer, and which forms a
stored gold may take. ``grader.py`` decides equivalence on top of this.
"""

from __future__ import annotations

import re

import numpy as np

NO_THINK_CLOSE, NO_BOXED, TOO_LONG = "no_think_close", "no_boxed", "answer_too_long"
THINK_CLOSE = "</think>"
MAX_ANSWER_CHARS = 1000  # a boxed answer longer than this is not a final answer; never parsed
MAX_GOLD_CHARS = 2000
_MAX_BOXES = 6  # math-verify joins a first box and up to 5 more
_BOX_OPEN = re.compile(r"\\boxed\s*\{")
# Two boxes are parts of one answer when only this lies between them (at most _MAX_GAP characters,
# math-verify's own reach): math delimiters, spacing, \text{...} wrappers, ",", ";", "and", "or",
# and a label such as "x =" or "x_2 =" before the next box. Anything else (prose, a full stop)
# makes the earlier box an earlier attempt: only the last box counts.
_MAX_GAP = 70
_GAP_NOISE = re.compile(
    r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}|\\q?quad\b|\\[,;:! ]|~|\$|\\[()\[\]]"
)
_GAP_LABEL = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?\s*=\s*$")
_GAP_JOIN = re.compile(r"[\s,;]*(?:(?:and|or)[\s,;]*)?")
_BRACE = re.compile(r"[{}]")


def normalize_gold(gold) -> tuple[str, ...]:
    """Gold of any stored type -> tuple of acceptable forms (stripped, outer $ removed).

    A str (bytes are decoded as UTF-8), an int/float, or a list/tuple/array of those (alternative
    forms). None, a bool, NaN/inf, an integer of more than MAX_GOLD_CHARS digits or undecodable
    bytes give () (unparseable: scored None); any other type (a dict, a set, an object) raises
    TypeError.

    >>> normalize_gold(142.0), normalize_gold(["9.6\\n", "$x$"])
    (('142',), ('9.6', 'x'))
    """
    if isinstance(gold, np.ndarray):
        gold = gold.tolist()
    if isinstance(gold, str | bytes | bytearray | int | float | np.generic) or gold is None:
        forms = [_gold_form(gold)]
    elif isinstance(gold, list | tuple):
        forms = [_gold_form(g) for g in gold]
    else:
        raise TypeError(
            f"a gold answer must be a str, a number, or a list of alternative forms; got "
            f"{type(gold).__name__}: {gold!r:.80}"
        )
    forms = [g for g in forms if g is not None]
    out = []
    for g in forms:
        g = g.strip()
        # Strip only a single enclosing pair: "$69$,$84$" is two math spans, not one wrapped one.
        while len(g) >= 2 and g[0] == "$" and g[-1] == "$" and "$" not in g[1:-1]:
            g = g[1:-1].strip()
        # Unbalanced braces would only survive as math-verify's raw-string fallback: not a gold.
        if g and len(g) <= MAX_GOLD_CHARS and _balanced(g) and g not in out:
            out.append(g)
    return tuple(out)


def _gold_form(gold) -> str | None:
    """One scalar gold as text, None where it can be no gold (see normalize_gold)."""
    if isinstance(gold, np.generic):
        gold = gold.item()
    if isinstance(gold, bytes | bytearray):
        try:
            return bytes(gold).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(gold, str):
        return gold
    if isinstance(gold, bool) or gold is None:
        return None
    if isinstance(gold, int):  # exact: never through float (10**400 overflows, 10**5000 > str())
        return str(gold) if gold.bit_length() <= MAX_GOLD_CHARS * 3.3 else None
    if isinstance(gold, float):
        if not np.isfinite(gold):
            return None
        return str(int(gold)) if gold.is_integer() else repr(gold)
    raise TypeError(
        f"a gold form must be a str or a number; got {type(gold).__name__}: {gold!r:.80}"
    )


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _box_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every \\boxed{...}, end just past its closing brace or -1 if it never closes.

    One pass over the braces with a stack, so nested or unbalanced junk stays linear in length.
    """
    opens = {m.end() - 1: m.start() for m in _BOX_OPEN.finditer(text)}  # "{" position -> start
    spans: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            pos = stack.pop()
            if pos in opens:
                spans[opens[pos]] = m.end()
    return sorted((start, spans.get(start, -1)) for start in opens.values())


def _joins(gap: str) -> bool:
    """Whether the text between two boxes makes them parts of one answer (see _GAP_NOISE)."""
    if len(gap) >= _MAX_GAP:
        return False
    gap = _GAP_LABEL.sub("", _GAP_NOISE.sub(lambda m: f" {m.group(1) or ''} ", gap))
    return _GAP_JOIN.fullmatch(gap) is not None


def extract_boxed(response: str, thinking: bool = True) -> tuple[list[str] | None, str | None]:
    """Boxed parts of the final answer, or (None, reason) when the response has no gradable answer.

    >>> extract_boxed("<think>...</think> so \\\\boxed{3} and \\\\boxed{5}.")
    (['3', '5'], None)
    >>> extract_boxed("<think>cut off", thinking=True)
    (None, 'no_think_close')
    """
    if thinking:
        cut = response.rfind(THINK_CLOSE)
        if cut < 0:
            return None, NO_THINK_CLOSE
        response = response[cut + len(THINK_CLOSE) :]
    spans = _box_spans(response)
    if not spans or spans[-1][1] < 0:  # none, or the last box never closes (truncated output)
        return None, NO_BOXED
    chosen = [spans[-1]]
    for start, end in reversed(spans[:-1]):
        if len(chosen) == _MAX_BOXES or end < 0 or end > chosen[0][0]:
            break
        if not _joins(response[end : chosen[0][0]]):
            break
        chosen.insert(0, (start, end))
    parts = [response[response.index("{", s) + 1 : e - 1].strip() for s, e in chosen]
    if sum(map(len, parts)) > MAX_ANSWER_CHARS:
        return None, TOO_LONG
    if not any(parts):
        return None, NO_BOXED
    return parts, None
