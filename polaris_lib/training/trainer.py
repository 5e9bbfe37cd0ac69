"""PolarisGRPOTrainer: TRL's GRPOTrainer plus the POLARIS dynamic-sampling tricks (RECIPE.md §3-4).

A thin subclass: every override calls super() and post-processes; no TRL method body is copied
(TRL removed its own replay-buffer trainer because such a copy drifted). Seams used (TRL 1.15):
- `_generate`: completions before log-probs and rewards. Completions are re-decoded keeping
  special tokens (TRL's skip_special_tokens=True deletes a special `</think>`, which the grader
  needs), then rollout rescue (rescue.py). The rows
  are graded once here through TRL's own `_calculate_rewards` (pre-rescue correctness); when no
  row is rescued that result is reused by the normal path, so nothing is graded twice.
- `_calculate_rewards`: stash the gathered (global) rewards.
- `_generate_and_score_completions`: the batch before TRL shuffles it (rows of a prompt are
  contiguous) -> informative substitution (substitution.py), metrics, per-prompt reward log.
- `compute_loss`: a skipped step returns a loss with no graph, so no parameter gets a gradient and
  torch's AdamW (which ignores params whose .grad is None) changes neither the weights nor its
  moments: a real no-op step (zeroing advantages would still apply weight decay and momentum).
- `vllm_generation.sync_weights` (colocated vLLM only): wrapped by the weight-sync canary
  (vllm_sync.py); on vLLM's CPU backend the sync itself is the CPU-only shim there.
- `_save_checkpoint` / `train`: the rescue buffer travels with checkpoints; on resume the reward
  log is trimmed to the checkpoint's step, so no step is duplicated or lost.

Multi-process (accelerate): TRL shards a generation batch across ranks in order (rank 0 holds
the first rows) and gathers rewards globally. Substitution and rescue are decided from gathered,
rank-identical data with an RNG seeded by (seed, step), so all ranks take the same decision; the
per-row tensors are gathered (padded to a common width), substituted as one global batch, and
each rank keeps its own slice. This is correct by construction for groups that straddle ranks.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOTrainer

from polaris_lib import artifacts
from polaris_lib.config.sections import ConfigError, StageConfig
from polaris_lib.training.backend import require_backend_trainer
from polaris_lib.training.checkpoint_check import check_checkpoint
from polaris_lib.training.rescue import RESCUE_FILE, RescueBuffer, latest_correct_rows, plan_rescue
from polaris_lib.training.reward_log import group_records, trim_reward_log
from polaris_lib.training.substitution import (
    RELEASED,
    SKIP,
    SubstitutionResult,
    gather_rows,
    local_rows,
    substitute,
)
from polaris_lib.training.trl_compat import colocated_engine_rope, install_cpu_logprob_fallback
from polaris_lib.training.vllm_sync import install_weight_sync_guard

install_cpu_logprob_fallback()  # TRL 1.15's fused LM head needs Triton; CPU gets plain torch

SKIP_KEY = "polaris_skip"


@dataclass
class PolarisOptions:
    """The POLARIS switches the trainer reads (a subset of StageConfig)."""

    substitution: str = "intent"
    """intent / released / off (StageConfig.substitution); a bool is read as intent / off."""
    low_mixed_policy: str = "skip"
    """'skip', 'train_mixed' or 'none' when mixed groups are <= min_mixed_fraction."""
    min_mixed_fraction: float = 1.0 / 3.0
    """Threshold of the low-mixed policy (authors' code: 1/3)."""
    rescue: bool = True
    """Rollout rescue from the per-problem buffer."""
    trained_steps_budget: int | None = None
    """skipped_steps='redraw': stop once this many steps trained (skipped batches not counted);
    None = TRL's max_steps alone decides (a skipped batch uses a step)."""

    def __post_init__(self) -> None:
        if isinstance(self.substitution, bool):
            self.substitution = "intent" if self.substitution else "off"

    @classmethod
    def from_stage(cls, st: StageConfig | PolarisOptions) -> PolarisOptions:
        if isinstance(st, PolarisOptions):
            return st
        return cls(
            substitution=st.substitution,
            low_mixed_policy=st.low_mixed_policy,
            min_mixed_fraction=st.min_mixed_fraction,
            rescue=st.rescue,
            trained_steps_budget=st.max_steps if st.skipped_steps == "redraw" else None,
        )


@dataclass
class _Generation:
    """Scratch state of one generation batch (local inputs, global rewards, rescued rows)."""

    inputs: list[dict]
    pre_rewards_per_func: torch.Tensor | None = None
    rewards_per_func: torch.Tensor | None = None
    rescued_rows: dict[int, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class PolarisGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with substitution, low-mixed policy, rollout rescue and a per-prompt log.

    Extra keyword arguments: `polaris` (a StageConfig or PolarisOptions), `reward_log_path`
    (jsonl, one line per prompt group per step; main process writes), `rescue_buffer`, `backend`
    (model.backend: "unsloth" requires this class to derive from Unsloth's GRPOTrainer, checked
    before anything is built; see backend.py).
    """

    def __init__(
        self,
        *args: Any,
        polaris: StageConfig | PolarisOptions | None = None,
        reward_log_path: str | Path | None = None,
        rescue_buffer: RescueBuffer | None = None,
        backend: str = "transformers",
        **kwargs: Any,
    ) -> None:
        require_backend_trainer(type(self), backend)
        model = kwargs.get("model", args[0] if args else None)
        # TRL's colocated engine gets the policy's RoPE (YaRN on a stage past the native context)
        with colocated_engine_rope(model) if hasattr(model, "config") else nullcontext():
            super().__init__(*args, **kwargs)
        # Colocated vLLM: every weight sync is checked by the canary (WeightSyncError on a stale
        # engine); without CUDA the sync itself goes through the CPU-only shim (vllm_sync.py).
        self.weight_sync_guard = install_weight_sync_guard(self)
        self.polaris = PolarisOptions.from_stage(polaris or PolarisOptions())
        self.reward_log_path = Path(reward_log_path) if reward_log_path else None
        self.rescue_buffer = rescue_buffer if rescue_buffer is not None else RescueBuffer()
        self._gen: _Generation | None = None
        a = self.args
        if a.num_iterations != 1 or a.steps_per_generation != a.gradient_accumulation_steps:
            raise ConfigError(
                "PolarisGRPOTrainer needs one optimizer step per generation batch: set "
                f"num_iterations=1 (got {a.num_iterations}) and steps_per_generation = "
                f"gradient_accumulation_steps (got {a.steps_per_generation} vs "
                f"{a.gradient_accumulation_steps}); grpo_config.to_grpo_config does this"
            )
        if self.polaris.substitution == RELEASED and not all(
            callable(f) and not isinstance(f, torch.nn.Module) for f in self.reward_funcs
        ):
            raise ConfigError(
                "substitution='released' re-grades copied groups with the reward functions; "
                "it needs function rewards, not reward models"
            )
        budget = self.polaris.trained_steps_budget
        if budget is not None and a.max_steps < budget:
            raise ConfigError(
                f"skipped_steps='redraw' trains {budget} steps but TRL's max_steps is "
                f"{a.max_steps}: give it room for redrawn batches (grpo_config does: 2 x budget)"
            )
        self.trained_steps = 0
        """Steps that updated the weights (skipped batches excluded); restored on resume."""
        if budget is not None:
            self.add_callback(_StopAtTrainedSteps(self))
        if self.tools or self.rollout_func is not None or self.environment_factories is not None:
            raise ConfigError("PolarisGRPOTrainer supports single-turn rollouts only (no tools)")
        cols = getattr(self.train_dataset, "column_names", None) or []
        if "problem_id" not in cols:
            raise ConfigError(
                f"the training dataset needs a stable 'problem_id' column (has {cols}): the "
                "reward log, rescue buffer and easy-drop are keyed by it"
            )

    # ------------------------------------------------------------------ seams
    def _generate(self, prompts: list):
        prompt_ids, completion_ids, tool_mask, completions, logprobs, *rest = super()._generate(
            prompts
        )
        completions = self._decode_keeping_special(completion_ids, completions)
        if self._gen is None or not self.polaris.rescue:
            return (prompt_ids, completion_ids, tool_mask, completions, logprobs, *rest)
        t0 = time.perf_counter()
        gen = self._gen
        # Pre-rescue correctness, graded through TRL's own reward path (rewards are global).
        rpf = super()._calculate_rewards(gen.inputs, prompts, completions, completion_ids)
        gen.pre_rewards_per_func = rpf
        gen.seconds["reward"] = time.perf_counter() - t0
        rewards = _combine(rpf, self.reward_weights).cpu().numpy()
        pids = gather_object([str(x["problem_id"]) for x in gen.inputs])
        n, n_local, rank = self.num_generations, len(prompts), self.accelerator.process_index
        plan = plan_rescue(rewards, pids, n, self.rescue_buffer, self.max_completion_length)
        gen.rescued_rows = plan
        # Buffer update: each rank sends the latest correct rollout of the groups it holds.
        own = range(rank * n_local, (rank + 1) * n_local)
        records = [
            (pids[r], completion_ids[r - own.start], completions[r - own.start])
            for r in latest_correct_rows(rewards, n)
            if r in own
        ]
        self.rescue_buffer.update(gather_object(records))
        if plan:
            completion_ids, completions = list(completion_ids), list(completions)
            logprobs = None if logprobs is None else list(logprobs)
            for row, pid in plan.items():
                if row in own:
                    entry = self.rescue_buffer.get(pid)
                    i = row - own.start
                    completion_ids[i] = list(entry["ids"])
                    completions[i] = copy.deepcopy(entry["completion"])
                    if logprobs is not None:  # unknown sampling log-probs: TRL's IS ratio is 1
                        logprobs[i] = [None] * len(entry["ids"])
        gen.seconds["rescue"] = time.perf_counter() - t0 - gen.seconds["reward"]
        return (prompt_ids, completion_ids, tool_mask, completions, logprobs, *rest)

    def _decode_keeping_special(self, completion_ids, completions):
        """Completions as the kit decodes them everywhere (sampling.py): special tokens kept, eos/pad
        dropped. TRL decodes with skip_special_tokens=True, which deletes `</think>` from tokenizers
        that mark it special (the toy's), and the grader needs it (RECIPE.md §8). A tokenizer with
        a response parser (tool calls) keeps TRL's own decoding."""
        tok = self._tokenizer
        if getattr(tok, "response_schema", None) or getattr(tok, "response_template", None):
            return completions
        drop = {*self.eos_token_ids, tok.pad_token_id}
        texts = tok.batch_decode(
            [[t for t in ids if t not in drop] for ids in completion_ids], skip_special_tokens=False
        )
        if completions and isinstance(completions[0], list):  # conversational
            return [[{"role": "assistant", "content": t}] for t in texts]
        return texts

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        gen = self._gen
        t0 = time.perf_counter()
        if gen is not None and gen.pre_rewards_per_func is not None and not gen.rescued_rows:
            rpf = gen.pre_rewards_per_func  # these exact rows were just graded by the same path
        else:
            rpf = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if gen is not None:
            gen.rewards_per_func = rpf
            gen.seconds["reward"] = gen.seconds.get("reward", 0.0) + time.perf_counter() - t0
        return rpf

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        self._gen = _Generation(inputs=inputs)
        t0 = time.perf_counter()
        try:
            out = super()._generate_and_score_completions(inputs)
            t1 = time.perf_counter()
            out = self._postprocess(out)
            gen = self._gen
            gen.seconds["generate_and_score"] = t1 - t0
            gen.seconds["polaris"] = time.perf_counter() - t1 + gen.seconds.get("rescue", 0.0)
            for k, v in gen.seconds.items():
                self._metrics["train"][f"polaris/time_{k}"].append(v)
        finally:
            self._gen = None
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skip = inputs.get(SKIP_KEY)
        if skip is not None and bool(skip.any()):
            # No forward pass: nothing gets a gradient, AdamW skips every parameter (see module doc).
            return torch.zeros((), device=self.accelerator.device, requires_grad=True)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    # ------------------------------------------------------------------ substitution + logs
    def _postprocess(self, out: dict[str, Any]) -> dict[str, Any]:
        gen, n = self._gen, self.num_generations
        n_local = out["prompt_ids"].shape[0]
        rewards = _combine(gen.rewards_per_func, self.reward_weights)  # global, post-rescue
        pre = (
            rewards
            if gen.pre_rewards_per_func is None
            else _combine(gen.pre_rewards_per_func, self.reward_weights)
        )
        rank = self.accelerator.process_index
        local = slice(rank * n_local, (rank + 1) * n_local)
        out["polaris_problem_id"] = [str(x["problem_id"]) for x in gen.inputs]
        out["polaris_answer"] = [x.get("answer") for x in gen.inputs]
        out["polaris_reward"] = rewards[local].to(out["advantages"].device)
        batch = gather_rows(
            out, n_local, self.accelerator, gather_object, self._tokenizer.pad_token_id
        )
        pids = list(batch["polaris_problem_id"])
        rng = np.random.default_rng([int(self.args.seed), int(self.state.global_step), 5])
        batch, res = substitute(
            batch,
            rewards,
            n,
            policy=self.polaris.low_mixed_policy,
            min_mixed_fraction=self.polaris.min_mixed_fraction,
            rng=rng,
            mode=self.polaris.substitution,
            regrade=self._regrade_rows,
            scale_rewards=self.scale_rewards,
        )
        if res.action != SKIP:
            self.trained_steps += 1
        n_global = rewards.shape[0]
        batch[SKIP_KEY] = torch.full((n_global,), res.action == SKIP, device=rewards.device)
        self._log_step(res, pids, pre.cpu().numpy(), gen.rescued_rows)
        return local_rows(batch, n_global, n_local, rank)

    def _regrade_rows(self, batch: dict[str, Any], rows: torch.Tensor) -> torch.Tensor:
        """Rewards of `rows`' completions against the batch's `polaris_answer` (released mode).

        Decoded as the kit decodes everywhere (special tokens kept, eos/pad dropped) and graded by
        the same reward functions TRL uses, weighted as TRL combines them.
        """
        ids, mask = batch["completion_ids"], batch["completion_mask"]
        drop = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        seqs = [
            [
                t
                for t, m in zip(ids[r].tolist(), mask[r].tolist(), strict=True)
                if m and t not in drop
            ]
            for r in rows.tolist()
        ]
        texts = self._tokenizer.batch_decode(seqs, skip_special_tokens=False)
        answers = [batch["polaris_answer"][r] for r in rows.tolist()]
        per_func = []
        for f in self.reward_funcs:
            out = f(prompts=[None] * len(texts), completions=texts, answer=answers)
            per_func.append([np.nan if v is None else float(v) for v in out])
        rpf = torch.tensor(per_func, dtype=torch.float32).T
        return _combine(rpf, self.reward_weights.cpu())

    def _log_step(self, res: SubstitutionResult, pids, pre: np.ndarray, rescued: dict) -> None:
        """Per-step fractions into TRL's metrics; per-prompt records into the reward log."""
        n, step = self.num_generations, int(self.state.global_step) + 1
        m = self._metrics["train"]
        for k, v in res.fractions().items():
            m[f"polaris/{k}"].append(v)
        m["polaris/rescued"].append(float(len(rescued)))
        m["polaris/trained_steps"].append(float(self.trained_steps))
        m["polaris/pass_rate_pre_rescue"].append(float(np.nanmean(pre)) if pre.size else 0.0)
        if self.reward_log_path is None or not self.accelerator.is_main_process:
            return
        records = group_records(step, pids, pre, n, res, rescued)
        artifacts.append_jsonl(self.reward_log_path, records)

    # ------------------------------------------------------------------ checkpoints / resume
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = (
                Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            )
            self.rescue_buffer.save(folder / RESCUE_FILE)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """TRL's train(); on resume also restores the rescue buffer and trims the reward log."""
        ckpt = resume_from_checkpoint
        if ckpt is True:
            from transformers.trainer_utils import get_last_checkpoint

            ckpt = get_last_checkpoint(self.args.output_dir)
        start = 0
        if ckpt:
            check_checkpoint(ckpt)  # a torn file fails here naming itself, not deep inside TRL
            state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
            start = int(state["global_step"])
            trained = [h["polaris/trained_steps"] for h in state.get("log_history", [])]
            self.trained_steps = int(trained[-1]) if trained else start
            if (Path(ckpt) / RESCUE_FILE).exists():
                self.rescue_buffer = RescueBuffer.load(Path(ckpt) / RESCUE_FILE)
        if self.reward_log_path is not None and self.accelerator.is_main_process:
            trim_reward_log(self.reward_log_path, start)
        return super().train(resume_from_checkpoint=ckpt or None, **kwargs)


class _StopAtTrainedSteps(TrainerCallback):
    """skipped_steps='redraw': end training once the budget of *trained* steps is reached (the
    authors' verl does not count a skipped batch as a step; TRL's max_steps leaves room)."""

    def __init__(self, trainer: PolarisGRPOTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.trained_steps >= self.trainer.polaris.trained_steps_budget:
            control.should_training_stop = True
        return control


def _combine(rewards_per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum over reward functions, NaN where every function returned None (as TRL)."""
    r = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    r[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return r
