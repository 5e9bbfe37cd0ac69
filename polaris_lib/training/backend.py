"""Unsloth before TRL (RECIPE.md §3 on one GPU; issue 12 defect 3): the training face imports
this module before any module that imports trl.

Unsloth patches TRL by rebinding module attributes when it is imported (``trl.GRPOTrainer`` becomes
``UnslothGRPOTrainer``, with Unsloth's loss, log-prob and train/inference mode switching); a class
bound before that keeps TRL's code. trainer.py binds ``from trl import GRPOTrainer`` when it is
imported, so PolarisGRPOTrainer derives from Unsloth's trainer only if Unsloth came first — else it
is a hybrid of TRL's trainer with Unsloth's model and config. Notebook 03 and
scripts/train_stage.py import ``polaris_lib.training`` before they know the preset, so the choice
is the environment's (`policy.load.unsloth_wanted`), and `require_backend_trainer` checks at
trainer construction that an unsloth-backend run really got Unsloth's trainer.
"""

from __future__ import annotations

from polaris_lib.config.sections import ConfigError
from polaris_lib.policy.load import UNSLOTH_FIRST_ENV, import_unsloth_first, unsloth_wanted

UNSLOTH_TRAINER = "UnslothGRPOTrainer"
"""The class Unsloth's PatchFastRL puts in place of trl.GRPOTrainer (unsloth 2026.10)."""


def _import_unsloth_if_wanted() -> bool:
    if unsloth_wanted():
        import_unsloth_first()
        return True
    return False


UNSLOTH_FIRST = _import_unsloth_if_wanted()
"""Whether this process imported Unsloth before TRL (decided once, when the face is imported)."""


def derives_from_unsloth(cls: type) -> bool:
    """True when Unsloth's patched GRPOTrainer is among `cls`'s bases."""
    return any(c.__name__ == UNSLOTH_TRAINER for c in cls.__mro__)


def require_backend_trainer(cls: type, backend: str) -> None:
    """Refuse an unsloth-backend trainer whose class does not derive from Unsloth's trainer."""
    if backend != "unsloth" or derives_from_unsloth(cls):
        return
    bases = " -> ".join(f"{c.__module__}.{c.__name__}" for c in cls.__mro__[1:3])
    raise ConfigError(
        f"backend 'unsloth', but {cls.__name__} derives from {bases}, not Unsloth's "
        f"{UNSLOTH_TRAINER}: trl was imported before unsloth (or Unsloth's GRPO patch is absent, "
        "as on its CPU backend), so Unsloth's GRPO loss, log-probs and vLLM mode switching would "
        "be bypassed. Start a fresh kernel/process and import polaris_lib.training before "
        f"anything imports trl, with unsloth installed and a CUDA GPU visible (or "
        f"{UNSLOTH_FIRST_ENV}=1)."
    )
