"""Batch-running the notebooks: the resumable runner, its steps, papermill and the project kernel."""

from polaris_lib.pipeline.jupyter_kernel import ensure_kernel, register_lab_kernel
from polaris_lib.pipeline.lock import RunInUse, RunLock
from polaris_lib.pipeline.notebook import StepFailed
from polaris_lib.pipeline.runner import (
    NotConfirmed,
    RunContext,
    RunResult,
    merge_overrides,
    run_pipeline,
)
from polaris_lib.pipeline.steps import QUICK_OVERRIDES, Step, plan_steps, select_steps
