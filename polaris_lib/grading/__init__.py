"""The reward (RECIPE.md §8): boxed-answer extraction and math-verify behind a hang-proof pool."""

from polaris_lib.grading.audit import (
    AUDIT_COLUMNS,
    AUTHORS_RULE,
    KIT_RULE,
    agreement,
    audit,
    authors_answer,
    disagreements,
    kit_rule_name,
)
from polaris_lib.grading.grader import (
    Grader,
    GradeResult,
    default_grader,
    grade,
    make_reward_fn,
)
