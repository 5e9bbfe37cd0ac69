"""Everything that loads or reads a model: one loader, RoPE variants, sampling, the rollout loop."""

from polaris_lib.policy.load import (
    import_unsloth_first,
    load_policy,
    lora_request_for,
    model_path,
    resolve_device,
    weights_key,
    world_key,
)
from polaris_lib.policy.rollouts import (
    RESPONSE_COLUMNS,
    grade_samples,
    regrade,
    rollout,
)
from polaris_lib.policy.sampling import (
    loaded_model,
    release_engine,
    sample,
)
