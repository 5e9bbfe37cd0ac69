"""01 · Temperature probe (RECIPE.md §1): sample a grid, measure accuracy and diversity, choose T."""

from polaris_lib.probe import figures
from polaris_lib.probe.run import (
    ARTIFACTS,
    SAMPLE_COLUMNS,
    check_artifacts,
    figure_caption,
    per_temperature,
    probe_problems,
    run_grid,
    run_probe,
    save,
)
from polaris_lib.probe.zones import (
    PAPER_QWEN3_4B,
    PAPER_QWEN3_4B_CHOICE,
    PAPER_QWEN3_4B_DISTINCT4,
    RULE,
    ZONES,
    Choice,
    accuracy_matrix,
    bootstrap_weights,
    choice_stability,
    choose_initial,
    choose_temperature,
    classify_zones,
    match_diversity,
    paper_reference,
    plateau_test,
    previous_reference,
    rule_for,
    smooth,
    stage1_zones,
)
