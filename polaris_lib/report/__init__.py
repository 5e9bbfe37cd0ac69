"""06 · The run report: report.html rebuilt from the run folder's files alone."""

from polaris_lib.report.build import (
    ARTIFACTS,
    INDEX,
    build_compare_report,
    build_report,
    show_figure,
)
from polaris_lib.report.runs import (
    TRAIN_METRICS,
    Run,
    difficulty,
    easy_drops,
    eval_table,
    evaluation,
    manifest_steps,
    paper_table,
    probe_curves,
    probe_name,
    stage_name,
    temperatures,
    training,
    verdict,
    yarn,
)
