"""02 · Curation by difficulty (RECIPE.md §2): pass rates by the policy, drop n/n, sanity views."""

from polaris_lib.curate import figures
from polaris_lib.curate.run import (
    ARTIFACTS,
    PASS_COLUMNS,
    check_artifacts,
    estimate_pass_rates,
    figure_caption,
    pool_problems,
    run_curation,
    save,
    summarize_samples,
)
from polaris_lib.curate.select import (
    bucket_table,
    by_level,
    compare_difficulty,
    parse_reference_difficulty,
    sanity_figure_name,
    sanity_tables,
    select,
)
