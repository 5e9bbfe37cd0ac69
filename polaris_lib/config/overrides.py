"""Dotted overrides on top of a preset, and the config a notebook resolves from its parameters.

The layering (STYLE.md, after nanoGPT): dataclass defaults, then a preset (presets.py), then
dotted overrides (`{"stages.*.max_steps": 3}`), then the notebook's parameters-cell values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from polaris_lib.config import sections
from polaris_lib.config.presets import PRESETS, get_preset
from polaris_lib.config.sections import ConfigError, RunConfig


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a copy of `cfg` with dotted overrides applied and re-validated.

    >>> apply_overrides(get_preset("tiny"), {"stages.0.max_steps": 3}).stages[0].max_steps
    3

    `stages.*.x` sets x in every stage; a value for a dataclass field is type-checked loosely
    (ints accepted for floats).
    """
    d = copy.deepcopy(cfg.to_dict())
    for key, value in overrides.items():
        _set_dotted(d, key.split("."), value, key)
    if d.get("preset") not in PRESETS:
        raise ConfigError(
            f"override 'preset': unknown preset {d.get('preset')!r}; choose one of: "
            f"{', '.join(PRESETS)}"
        )
    return RunConfig.from_dict(d)


def _set_dotted(d: Any, parts: list[str], value: Any, full: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(d, list):
        if not rest:
            raise ConfigError(f"override {full!r}: cannot replace a whole list element")
        targets = d if head == "*" else [d[_index(head, len(d), full)]]
        for t in targets:
            _set_dotted(t, rest, value, full)
        return
    if not isinstance(d, dict) or head not in d:
        known = ", ".join(sorted(d)) if isinstance(d, dict) else "(not a section)"
        raise ConfigError(f"override {full!r}: no field {head!r}; known: {known}")
    if rest:
        _set_dotted(d[head], rest, value, full)
    else:
        d[head] = value


def _index(s: str, n: int, full: str) -> int:
    if not s.isdigit() or int(s) >= n:
        raise ConfigError(f"override {full!r}: {s!r} is not a stage index in 0..{n - 1} (or '*')")
    return int(s)


# Notebook parameters that are not config fields: the dotted-override dict and the stage selector.
NOTEBOOK_ONLY_PARAMS = {"overrides", "stage"}


def resolve(
    preset: str,
    overrides: dict[str, Any] | None = None,
    *,
    section: str | None = None,
    **params: Any,
) -> RunConfig:
    """The config a notebook runs with: preset, then dotted `overrides`, then its parameters.

    Parameters are the notebook's parameters-cell names (case-insensitive): a RunConfig field
    (`SEED`, `RUN_DIR`) or a field of the notebook's `section` (`probe`, `curation`, `yarn`,
    `eval`; `stages` sets the field in every stage). A None value keeps the preset's value.

    >>> resolve("tiny", {"probe.n_samples": 4}, section="probe", SEED=3, OVERRIDE_TEMPERATURE=1.2).probe.override_temperature
    1.2
    """

    cfg = get_preset(preset)
    merged: dict[str, Any] = dict(overrides or {})
    top = {f.name for f in dataclasses.fields(RunConfig)}
    for name, value in params.items():
        key = name.lower()
        if value is None or key in NOTEBOOK_ONLY_PARAMS:
            continue
        if key in top:
            merged[key] = value
        elif section is not None and key in section_fields(section):
            merged[f"{section}.*.{key}" if section == "stages" else f"{section}.{key}"] = value
        else:
            raise ConfigError(
                f"parameter {name!r} is not a config field of the run or of {section!r}"
            )
    cfg = apply_overrides(cfg, merged) if merged else cfg
    return dataclasses.replace(cfg, run_dir=str(project_path(cfg.run_dir)))


PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the kit runs from (it holds notebooks/ and reports/)."""


def project_path(path: str | Path) -> Path:
    """An absolute path for a run folder: a relative one is taken from the project root.

    JupyterLab starts a notebook's kernel in notebooks/, papermill (the runner) in the project
    root; resolving against the root makes RUN_DIR="reports/x" the same folder in both, so a
    user can step through the run `make demo` made. Outside a checkout (the kit installed as a
    package) the current directory is the root.
    """
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    root = PROJECT_ROOT if (PROJECT_ROOT / "notebooks").is_dir() else Path.cwd()
    return root / path


def section_fields(section: str) -> set[str]:
    """Field names of one config section (probe, curation, stages, yarn, eval, model, toy)."""
    types = {
        "probe": sections.ProbeConfig,
        "curation": sections.CurationConfig,
        "stages": sections.StageConfig,
        "yarn": sections.YarnConfig,
        "eval": sections.EvalConfig,
        "model": sections.ModelConfig,
        "toy": sections.ToyConfig,
    }
    if section not in types:
        raise ConfigError(f"unknown config section {section!r}; one of {sorted(types)}")
    return {f.name for f in dataclasses.fields(types[section])}


def parse_value(text: str) -> Any:
    """A -p VALUE: JSON literal when it parses (4, 1.5, true, null, [1,2], "x"), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
