"""05 · Evaluation (RECIPE.md §7): avg@k of each checkpoint on each benchmark, every response kept."""

from polaris_lib.evaluate import figures
from polaris_lib.evaluate.planner import (
    ASSUMED_TOKENS_PER_S,
    format_plan,
    measured_tokens_per_s,
    pilot,
    plan_eval,
)
from polaris_lib.evaluate.protocol import (
    SELECTIONS,
    SETTINGS,
    grader_audit,
    legend_text,
    mark,
    protocol_metrics,
    protocol_table,
    selection,
    stamp,
)
from polaris_lib.evaluate.run import (
    PAIRS,
    SKIPPED_NOTE,
    TOY_EVAL_PROBLEMS,
    benchmarks_to_run,
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
    SAMPLING_METHOD,
    length_bucket_accuracy,
    paired_difference,
    paired_table,
    pass_at_k_curve,
    per_problem_table,
    plan_samples,
    summarize,
)
from polaris_lib.paper import (
    paper_comparison,
    paper_reference,
)
