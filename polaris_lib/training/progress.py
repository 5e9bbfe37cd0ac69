"""One progress line per optimizer step of a GRPO stage, printed as TRL logs it.

The batch runner streams a notebook's output, so these lines are what the terminal shows during
the longest step of a run (instead of only "running for 7m02s"). Metric names are TRL's
(`reward`, `completions/mean_length`, `completions/clipped_ratio`) and the trainer's
(`polaris/frac_mixed`, `polaris/frac_substituted`); a missing one prints as "-".
"""

from __future__ import annotations

import sys
import time

from transformers import TrainerCallback


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def progress_line(logs: dict, step: int, total: int, s_per_step: float | None, stage=None) -> str:
    """The line for one optimizer step (pure: tested without a trainer)."""
    left = None if s_per_step is None else s_per_step * max(total - step, 0)
    head = f"[train{'' if stage is None else f' stage {stage}'}] step {step}/{total}"
    return (
        f"{head}  reward {_fmt(logs.get('reward'), '.3f')}"
        f"  mixed {_fmt(logs.get('polaris/frac_mixed'), '.0%')}"
        f"  substituted {_fmt(logs.get('polaris/frac_substituted'), '.0%')}"
        f"  len {_fmt(logs.get('completions/mean_length'), '.0f')}"
        f"  truncated {_fmt(logs.get('completions/clipped_ratio'), '.0%')}"
        f"  {_fmt(s_per_step, '.1f')} s/step"
        f"  left {'-' if left is None else _clock(left)}"
    )


class ProgressCallback(TrainerCallback):
    """Prints progress_line on the main process each time TRL logs a training step."""

    def __init__(self, stage: int | None = None, stream=None):
        self.stage, self.stream = stage, stream
        self._t0: float | None = None
        self._step0 = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0, self._step0 = time.perf_counter(), int(state.global_step)  # resumed: later start

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        step, done = int(state.global_step), int(state.global_step) - self._step0
        per = (time.perf_counter() - self._t0) / done if self._t0 and done > 0 else None
        line = progress_line(logs, step, int(state.max_steps), per, self.stage)
        print(line, file=self.stream or sys.stdout, flush=True)
