"""What a run is: typed config sections, named presets, and overrides on top of a preset."""

from polaris_lib.config.overrides import (
    NOTEBOOK_ONLY_PARAMS,
    PROJECT_ROOT,
    apply_overrides,
    parse_value,
    project_path,
    resolve,
    section_fields,
)
from polaris_lib.config.presets import PRESETS, get_preset
from polaris_lib.config.sections import (
    ConfigError,
    CurationConfig,
    EvalConfig,
    ModelConfig,
    ProbeConfig,
    RunConfig,
    StageConfig,
    ToyConfig,
    YarnConfig,
)
