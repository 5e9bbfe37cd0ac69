"""04 · Length extrapolation (RECIPE.md §6): RoPE variants past the trained length, and checks."""

from polaris_lib.extrapolate import figures
from polaris_lib.extrapolate.checks import (
    LOSS_EXTRA_TERMS,
    check_input,
    loss_summary,
    position_loss,
    position_loss_for,
    reference_texts,
    rope_check,
    variant_settings,
)
from polaris_lib.extrapolate.run import (
    ARTIFACTS,
    EXTRA_TERMS,
    PAPER_BENCHMARKS,
    RUNS,
    accuracy_by_item,
    avg_vs_length,
    bucket_accuracy,
    check_artifacts,
    checkpoint_for,
    describe_items,
    extrapolation_problems,
    figure_caption,
    findings,
    metrics,
    run_extrapolation,
    run_settings,
    trained_length,
)
from polaris_lib.policy.rope import (
    VARIANTS,
    yarn_max_length,
)
