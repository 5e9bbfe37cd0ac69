"""03 · One GRPO stage (RECIPE.md §2-5): PolarisGRPOTrainer, the stage's data and checkpoints,
the between-stage easy drop and the held-out check."""

from polaris_lib.training import figures
from polaris_lib.training.backend import (
    UNSLOTH_FIRST,
    derives_from_unsloth,
    require_backend_trainer,
)
from polaris_lib.training.checkpoint_check import (
    CorruptCheckpointError,
    check_checkpoint,
)
from polaris_lib.training.easy_drop import (
    easy_drop,
)
from polaris_lib.training.heldout import (
    DEFAULT_TOY_HELDOUT,
    compare_heldout,
    heldout_problems,
    heldout_scores,
    heldout_table,
    warmstart_scores,
)
from polaris_lib.training.stage import (
    REQUIRED_COLUMNS,
    StagePlan,
    build_trainer,
    dataset_sizes,
    drop_easy,
    figure_caption,
    final_complete,
    last_complete_checkpoint,
    load_stage_data,
    plan_stage,
    stage_metrics,
    steps_table,
    to_train_dataset,
    train_stage,
)
from polaris_lib.training.trainer import (
    PolarisGRPOTrainer,
)
