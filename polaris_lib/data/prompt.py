"""The one prompt format (RECIPE.md §7): problem + instruction suffix as one user turn.

Every step that shows a problem to the policy (probe, curation, training, evaluation, the verl
export) builds its prompt here, so the wording the policy is trained on is the one it is tested on.
"""

from __future__ import annotations

from polaris_lib.config.sections import INSTRUCTION_SUFFIX


def apply_suffix(problem: str, suffix: str = INSTRUCTION_SUFFIX) -> str:
    """Append the instruction suffix exactly once: apply_suffix("1+1?") == "1+1? " + suffix."""
    text = problem.rstrip()
    if not suffix or text.endswith(suffix):
        return text
    return f"{text} {suffix}"


def strip_suffix(text: str, suffix: str = INSTRUCTION_SUFFIX) -> str:
    """Remove a trailing instruction suffix (and the whitespace before it), if present."""
    text = text.rstrip()
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)].rstrip()
    return text


def build_messages(problem: str, suffix: str = INSTRUCTION_SUFFIX) -> list[dict]:
    """One user turn: the problem followed by the suffix (once; suffix "" adds nothing)."""
    return [{"role": "user", "content": apply_suffix(problem, suffix)}]


def prompt_texts(tokenizer, problems, suffix: str = "") -> list[str]:
    """Chat-formatted prompts (generation prompt added), one per row of a problems table."""
    return [
        tokenizer.apply_chat_template(
            build_messages(p, suffix), tokenize=False, add_generation_prompt=True
        )
        for p in problems["problem"]
    ]
