"""05 · Evaluation (RECIPE.md §7): avg@k of each checkpoint on each benchmark, every response kept."""

from polaris_lib.evaluate import figures
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
    check_artifacts,
    eval_metrics,
    figure_caption,
    headline,
)
from polaris_lib.metrics import (
    INTERVAL_METHOD,
    length_bucket_accuracy,
    pass_at_k_curve,
    per_problem_table,
    summarize,
)
from polaris_lib.paper import (
    paper_comparison,
)
