"""05 · Evaluation (RECIPE.md §7): avg@k of each checkpoint on each benchmark, every response kept."""

from polaris_lib.evaluate import figures
from polaris_lib.evaluate.planner import (
    ASSUMED_TOKENS_PER_S,
    format_plan,
    measured_tokens_per_s,
    pilot,
    plan_eval,
    plan_table,
)
from polaris_lib.evaluate.protocol import (
    SELECTIONS,
    grader_audit,
    protocol_metrics,
    protocol_table,
    selection,
)
from polaris_lib.evaluate.run import (
    PAIRS,
    SKIPPED_NOTE,
    TOY_EVAL_PROBLEMS,
    benchmarks_to_run,
    eval_context,
    eval_rope,
    harness_only,
    load_benchmark,
    pair_settings,
    plan,
    rollout_settings,
    run_evaluation,
    timings,
)
from polaris_lib.evaluate.tables import (
    ARTIFACTS,
    audit_metrics,
    check_artifacts,
    eval_metrics,
    figure_caption,
    half_width_table,
    headline,
    paired_metrics,
)
from polaris_lib.metrics import (
    INTERVAL_METHOD,
    PAIRED_METHOD,
    PROTOCOL_SETTINGS,
    SAMPLING_METHOD,
    length_bucket_accuracy,
    mark_protocols,
    paired_difference,
    paired_table,
    pass_at_k_curve,
    per_problem_table,
    plan_samples,
    protocol_legend,
    protocol_stamp,
    summarize,
)
from polaris_lib.paper import (
    paper_comparison,
    paper_reference,
)
