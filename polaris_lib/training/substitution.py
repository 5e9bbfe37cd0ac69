"""Intra-batch informative substitution (RECIPE.md §4), as pure functions over a batch dict.

A GRPO group whose rewards are all equal (all 0 or all 1 with the binary reward) has zero
advantage: it adds tokens to the loss denominator and nothing to the gradient. POLARIS replaces
each such group by a copy of a randomly chosen *mixed* group (without replacement while enough
exist). The authors' code copies the responses but not the ground-truth answer, so copies were
re-graded against the wrong answer; here a copy is made by re-indexing *rows*, so every per-row
entry of the batch (prompt, completion, masks, advantages, old log-probs, importance weights,
rewards, answers, problem ids) moves together and nothing is re-graded.

Layout: rows of one prompt are contiguous (`group_size` rows per group), as in the batch TRL's
`_generate_and_score_completions` returns before it shuffles. Shapes: rewards (N,), N = G x n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from trl.trainer.utils import nanstd

ALL0, ALL1, MIXED = "all0", "all1", "mixed"
PROMPT_KEYS = ("prompt_ids", "prompt_mask")  # left-padded per-row tensors; the others pad right
SUBSTITUTE, SKIP, TRAIN_MIXED, KEEP = "substitute", "skip", "train_mixed", "keep"
NO_RULE = "none"  # low_mixed_policy without the skip rule (plain GRPO)
INTENT, RELEASED, OFF = "intent", "released", "off"  # substitution modes (StageConfig.substitution)


def group_kinds(rewards: torch.Tensor | np.ndarray, group_size: int) -> np.ndarray:
    """Kind of each group: 'mixed' (two distinct rewards), else 'all0' / 'all1'.

    NaN rewards (unscorable rows, advantage 0 in TRL) are ignored; an all-NaN group is 'all0'.
    A constant group is 'all1' when its value is >= 0.5 (binary reward: exactly all-1).

    >>> group_kinds(np.array([0, 0, 1, 1, 1, 1]), 2).tolist()
    ['all0', 'all1', 'all1']
    """
    r = torch.as_tensor(np.asarray(rewards, dtype=np.float64)).view(-1, group_size)
    if r.numel() == 0:
        return np.array([], dtype=object)
    finite = torch.isfinite(r)
    hi = torch.where(finite, r, torch.full_like(r, -np.inf)).max(dim=1).values
    lo = torch.where(finite, r, torch.full_like(r, np.inf)).min(dim=1).values
    kinds = np.full(r.shape[0], ALL0, dtype=object)
    kinds[(hi >= 0.5).numpy()] = ALL1
    kinds[(hi > lo).numpy()] = MIXED
    return kinds


def batch_action(n_mixed: int, n_groups: int, policy: str, min_mixed_fraction: float) -> str:
    """What to do with a batch: 'substitute', 'skip', 'train_mixed' or 'keep'.

    The authors' code substitutes only when more than `min_mixed_fraction` (1/3) of the groups
    are mixed and otherwise skips the step; 'train_mixed' instead trains on the mixed groups
    alone. A batch without any mixed group has nothing to learn from: it is skipped, except
    under policy 'none' (plain GRPO, no rule), which keeps every batch as sampled.

    >>> batch_action(5, 16, "skip", 1 / 3), batch_action(6, 16, "skip", 1 / 3), batch_action(5, 16, "train_mixed", 1 / 3)
    ('skip', 'substitute', 'train_mixed')
    >>> batch_action(0, 16, "none", 1 / 3), batch_action(5, 16, "none", 1 / 3)
    ('keep', 'substitute')
    """
    if policy not in (SKIP, TRAIN_MIXED, NO_RULE):
        raise ValueError(
            f"low_mixed_policy must be 'skip', 'train_mixed' or 'none', got {policy!r}"
        )
    if policy == NO_RULE:
        return SUBSTITUTE if n_mixed else KEEP
    if n_mixed == 0:
        return SKIP
    if n_mixed / n_groups <= min_mixed_fraction + 1e-12:
        return policy
    return SUBSTITUTE


def plan_donors(kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Donor group for every group: itself when mixed, else a mixed group drawn at random.

    Donors are drawn without replacement while enough mixed groups exist; when uninformative
    groups outnumber mixed ones, a fresh permutation of the mixed groups is started.

    >>> plan_donors(np.array(["mixed", "all0", "all1", "mixed"]), np.random.default_rng(0)).tolist()
    [0, 3, 0, 3]
    """
    donors = np.arange(len(kinds))
    mixed = np.flatnonzero(kinds == MIXED)
    targets = np.flatnonzero(kinds != MIXED)
    if len(mixed) == 0 or len(targets) == 0:
        return donors
    draws: list[int] = []
    while len(draws) < len(targets):
        draws.extend(rng.permutation(mixed).tolist())
    donors[targets] = draws[: len(targets)]
    return donors


def row_index(donors: np.ndarray, group_size: int) -> torch.Tensor:
    """Row index that copies group donors[g] into group g (rows of a group contiguous)."""
    d = torch.as_tensor(donors, dtype=torch.long)
    return (d[:, None] * group_size + torch.arange(group_size)[None, :]).reshape(-1)


def is_row_entry(value: Any, n_rows: int) -> bool:
    """True for a per-row entry of the batch: a tensor or list whose first dimension is n_rows."""
    if isinstance(value, torch.Tensor):
        return value.ndim >= 1 and value.shape[0] == n_rows
    return isinstance(value, list) and len(value) == n_rows


def reindex_rows(batch: dict[str, Any], index: torch.Tensor, n_rows: int) -> dict[str, Any]:
    """A copy of `batch` with every per-row entry re-indexed by `index` (others unchanged)."""
    out = {}
    for key, value in batch.items():
        if not is_row_entry(value, n_rows):
            out[key] = value
        elif isinstance(value, torch.Tensor):
            out[key] = value.index_select(0, index.to(value.device))
        else:
            out[key] = [value[i] for i in index.tolist()]
    return out


def loss_mask(batch: dict[str, Any]) -> torch.Tensor:
    """The tokens TRL's loss counts: completion_mask (x tool_mask when present)."""
    mask = batch["completion_mask"]
    return mask if batch.get("tool_mask") is None else mask * batch["tool_mask"]


@dataclass
class SubstitutionResult:
    """What `substitute` did to one generation batch (all counts over groups)."""

    action: str
    """'substitute', 'skip', 'train_mixed' or 'keep' (see `batch_action`)."""
    kinds: np.ndarray
    """Kind of each group before substitution: all0 / all1 / mixed."""
    donors: np.ndarray
    """Donor group of each group (itself when kept)."""

    @property
    def n_substituted(self) -> int:
        """Groups whose rows were overwritten by a copy of another group."""
        return int((self.donors != np.arange(len(self.donors))).sum())

    def fractions(self) -> dict[str, float]:
        """Per-step fractions of groups (the trainer logs these under polaris/...)."""
        g = max(1, len(self.kinds))
        return {
            "frac_all0": float((self.kinds == ALL0).sum() / g),
            "frac_all1": float((self.kinds == ALL1).sum() / g),
            "frac_mixed": float((self.kinds == MIXED).sum() / g),
            "frac_substituted": self.n_substituted / g,
            "skipped": float(self.action == SKIP),
            "train_mixed": float(self.action == TRAIN_MIXED),
        }


Regrader = Callable[[dict[str, Any], torch.Tensor], torch.Tensor]
"""(batch, rows) -> rewards of those rows' completions against the batch's `polaris_answer`."""


def regrade_copies(
    batch: dict[str, Any],
    targets: np.ndarray,
    group_size: int,
    regrade: Regrader,
    scale_rewards: str,
) -> torch.Tensor:
    """The authors' released substitution: copied groups re-graded against the *replaced* group's
    answer (RECIPE §4), their advantages recomputed as GRPO's, in place. Returns the new rewards of
    the target groups' rows (mostly 0: the copied responses answer another problem).

    `batch` is already re-indexed (rows carry the donor's prompt, completion and log-probs) and
    its `polaris_answer` entries are the targets' own answers again, as in the authors' code.
    """
    rows = row_index(targets, group_size)
    rewards = regrade(batch, rows).to(torch.float32).view(-1, group_size)
    mean = torch.nanmean(rewards, dim=1, keepdim=True)
    adv = rewards - mean
    if scale_rewards == "group":
        adv = adv / (nanstd(rewards, dim=1).unsqueeze(1) + 1e-4)  # TRL's group scaling
    elif scale_rewards != "none":
        raise ValueError(
            f"released substitution supports scale_rewards group/none, not {scale_rewards!r}"
        )
    adv = adv.nan_to_num(0.0).reshape(-1)
    advantages = batch["advantages"]
    batch["advantages"] = advantages.index_copy(
        0, rows.to(advantages.device), adv.to(advantages.device, advantages.dtype)
    )
    return rewards.reshape(-1)


def substitute(
    batch: dict[str, Any],
    rewards: torch.Tensor,
    group_size: int,
    *,
    policy: str,
    min_mixed_fraction: float,
    rng: np.random.Generator,
    mode: str = INTENT,
    regrade: Regrader | None = None,
    scale_rewards: str = "group",
) -> tuple[dict[str, Any], SubstitutionResult]:
    """Apply informative substitution to a whole (global) batch whose rows are group-contiguous.

    - 'substitute': uninformative groups become copies of mixed donor groups (every per-row
      entry re-indexed together). mode 'intent': copies keep their donors' rewards, answers and
      advantages; mode 'released': copies keep the replaced group's answer and are re-graded
      against it by `regrade` (`regrade_copies`); mode 'off': the batch trains as sampled ('keep');
    - 'train_mixed': uninformative rows get an all-zero completion mask (out of the loss and of
      the token count);
    - 'skip': the batch is returned unchanged; the caller must make the step a no-op.
    The loss token count `num_items_in_batch` (TRL's dapo normaliser) is recomputed.
    """
    if mode not in (INTENT, RELEASED, OFF):
        raise ValueError(f"substitution must be intent, released or off, got {mode!r}")
    if mode == RELEASED and regrade is None:
        raise ValueError("released substitution needs a regrade function")
    n_rows = rewards.shape[0]
    if n_rows % group_size:
        raise ValueError(f"substitution: {n_rows} rows do not split into groups of {group_size}")
    kinds = group_kinds(rewards.detach().cpu(), group_size)
    action = batch_action(int((kinds == MIXED).sum()), len(kinds), policy, min_mixed_fraction)
    if action == SUBSTITUTE and mode == OFF:
        action = KEEP
    donors = np.arange(len(kinds))
    if action == SUBSTITUTE:
        donors = plan_donors(kinds, rng)
        answers = batch.get("polaris_answer")
        batch = reindex_rows(batch, row_index(donors, group_size), n_rows)
        targets = np.flatnonzero(donors != np.arange(len(donors)))
        if mode == RELEASED and len(targets):
            batch["polaris_answer"] = answers  # the bug: the copy keeps the target's answer
            new = regrade_copies(batch, targets, group_size, regrade, scale_rewards)
            if "polaris_reward" in batch:
                rows = row_index(targets, group_size).to(batch["polaris_reward"].device)
                batch["polaris_reward"] = batch["polaris_reward"].index_copy(
                    0, rows, new.to(batch["polaris_reward"].device, batch["polaris_reward"].dtype)
                )
    elif action == TRAIN_MIXED:
        keep = torch.as_tensor(np.repeat(kinds == MIXED, group_size))
        batch = dict(batch)
        mask = batch["completion_mask"]
        batch["completion_mask"] = mask * keep.to(mask.device, mask.dtype).unsqueeze(1)
    if "num_items_in_batch" in batch:
        count = loss_mask(batch).sum()
        batch["num_items_in_batch"] = count.to(batch["num_items_in_batch"].dtype)
    return batch, SubstitutionResult(action=action, kinds=kinds, donors=donors)


def gather_rows(batch: dict[str, Any], n_local: int, accelerator, gather_object, pad_token_id: int):
    """Every rank's rows in rank order (TRL's layout: rank r holds global rows r*n_local...).

    Per-row tensors are padded to the widest rank first (prompts on the left, the rest on the
    right); lists go through `gather_object`; other entries are left as they are. One process:
    the batch itself.
    """
    if accelerator.num_processes == 1:
        return batch
    out = {}
    for key, v in batch.items():
        if not is_row_entry(v, n_local):
            out[key] = v
        elif isinstance(v, list):
            out[key] = gather_object(v)
        else:
            if v.ndim >= 2:
                fill = pad_token_id if key in ("prompt_ids", "completion_ids") else 0
                v = accelerator.pad_across_processes(
                    v, dim=1, pad_index=fill, pad_first=key in PROMPT_KEYS
                )
            out[key] = accelerator.gather(v)
    return out


def local_rows(batch: dict[str, Any], n_global: int, n_local: int, rank: int) -> dict[str, Any]:
    """This rank's slice of a global batch (the inverse of `gather_rows`)."""
    if n_global == n_local:
        return batch
    sl = slice(rank * n_local, (rank + 1) * n_local)
    return {k: (v[sl] if is_row_entry(v, n_global) else v) for k, v in batch.items()}
