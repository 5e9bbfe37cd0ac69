"""The run folder: the only interface between pipeline steps (atomic files, layout, manifest)."""

from polaris_lib.artifacts.files import (
    append_jsonl,
    read_json,
    read_jsonl,
    read_parquet,
    rewrite_jsonl,
    save_figure,
    update_metrics,
    write_config,
    write_json,
    write_parquet,
)
from polaris_lib.artifacts.layout import (
    CURATE,
    DONE_FILE,
    EVAL,
    LENGTH,
    PROBE,
    REPORT,
    STAGE,
    STAGED_STEPS,
    checkpoint_dir,
    finish_step,
    holds_weights,
    named_checkpoint,
    policy_checkpoint,
    stage_data_path,
    stage_temperature,
    step_dir,
    step_done,
    weights_stamp,
)
