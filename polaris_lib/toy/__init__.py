"""The embedded toy world: task, char-level Qwen3 model, and the cached, shipped build."""

from polaris_lib.toy.build import (
    SHIPPED_DIR,
    accuracy_by_difficulty,
    build_toy_world,
    config_hash,
    default_cache_dir,
    load_toy_world,
    local_correct,
    ship_toy_world,
    warm_start,
    warmstart_stats,
)
from polaris_lib.toy.model import (
    CHAT_TEMPLATE,
    build_model,
    build_tokenizer,
    prompt_text,
)
from polaris_lib.toy.task import (
    CODE_VERSION,
    GUESS,
    IM_END,
    IM_START,
    PAD,
    SPECIAL_TOKENS,
    SPLITS,
    THINK,
    THINK_END,
    UNK,
    format_solution,
    guess_solution,
    make_problems,
    parse_problem,
    problem_text,
    reference_solution,
    sloppy_solution,
    teacher_solution,
    trace_steps,
)
