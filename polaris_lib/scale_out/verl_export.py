"""Export a preset to verl (docs/scaling_out.md): stage data in verl's RL parquet + a launch script.

One mapping, `verl_overrides(run, stage, ...)`, turns a stage config into verl's hydra overrides;
the launch script and ``verl_overrides.json`` are both rendered from it, so no value is written
twice. Target: verl 0.9.x (`python3 -m verl.trainer.main_ppo`, its V1 trainer). What verl does not
do is said where it matters: verl's DAPO group filter (``algorithm.filter_groups``) re-samples
fresh prompts instead of the kit's in-batch substitution; rollout rescue has no verl counterpart;
the between-stage easy-drop (RECIPE §2) runs as a kit call in the script, on the per-prompt
rewards `polaris_lib.scale_out.verl_reward` logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import Manifest
from polaris_lib.config import apply_overrides, get_preset
from polaris_lib.config.sections import ConfigError, RunConfig
from polaris_lib.data import (
    DATA_DIR_ENV,
    DataUnavailableError,
    catalog_entry,
    check_names,
    load_dataset,
    resolve_data_dir,
    to_verl,
)
from polaris_lib.scale_out.cost import hardware
from polaris_lib.scale_out.verl_script import (  # noqa: F401  (render_value: re-exported)
    ENTRY,
    VERL_VERSION,
    render_script,
    render_value,
)

# TRL loss_type -> verl actor.loss_agg_mode (verl core_algos.agg_loss).
LOSS_AGG = {
    # verl's token-mean is taken per (packed) micro-batch, then averaged: TRL's bnpo exactly (the
    # paper presets); TRL's dapo normalises over the whole batch, which verl has no mode for
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "grpo": "seq-mean-token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
}
LR_SCHEDULES = {"constant": "constant", "cosine": "cosine"}
# Placeholders the script defines as shell variables (overridable from the environment).
SHELL_PATHS = {
    "data_dir": "${DATA_DIR}",
    "ckpt_dir": "${CKPT_DIR}",
    "log_dir": "${REWARD_LOG_DIR}",
    "reward_fn": "${REWARD_FN}",
    "model_path": "${MODEL_PATH}",
}


def stage_temperature(run: RunConfig, stage: int, run_dir: str | Path | None) -> tuple[float, str]:
    """Rollout temperature of a stage: the config's, else the run folder's probe for that stage."""
    if run_dir is None and run.stage(stage).temperature is None:
        raise ConfigError(
            f"stage {stage} has no temperature: the preset leaves it to the probe and no --run-dir "
            f"was given. Run 01_temperature_probe (STAGE={stage}) and pass --run-dir, or set "
            f"stages.{stage - 1}.temperature"
        )
    try:
        return artifacts.stage_temperature(run, stage, run_dir)
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc}; pass the --run-dir of a run whose probe finished") from None


def verl_overrides(
    run: RunConfig, stage: int, *, temperature: float, paths: dict[str, str]
) -> dict[str, Any]:
    """verl hydra overrides for one stage of `run` (keys of verl's ppo_trainer config).

    `paths`: data_dir, ckpt_dir, log_dir, reward_fn, model_path (strings; the script passes
    shell variables). Stage k > 1 starts from stage k-1's merged checkpoint.
    """
    st = run.stage(stage)
    nodes, gpus, _, _ = hardware(run)
    if st.loss_type not in LOSS_AGG or st.lr_scheduler not in LR_SCHEDULES:
        raise ConfigError(
            f"stage {stage}: loss_type {st.loss_type!r} / lr_scheduler {st.lr_scheduler!r} have "
            f"no verl equivalent; verl has {sorted(LOSS_AGG)} / {sorted(LR_SCHEDULES)}"
        )
    if st.scale_rewards not in ("group", "none") or st.mask_truncated_completions:
        raise ConfigError(
            f"stage {stage}: scale_rewards={st.scale_rewards!r} / mask_truncated_completions="
            f"{st.mask_truncated_completions} cannot be expressed in verl (group|none, False)"
        )
    if st.vllm_is_correction:
        raise ConfigError(
            f"stage {stage}: vllm_is_correction (TRL's vLLM importance sampling) has no "
            "counterpart in the authors' verl; set vllm_is_correction=False to export"
        )
    seq_len = st.max_prompt_length + st.max_completion_length
    model = paths["model_path"] if stage == 1 else f"{paths['ckpt_dir']}/stage{stage - 1}/hf"
    data = f"{paths['data_dir']}/stage{stage}.parquet"
    a, r = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"
    o = {
        # --- data: 128 prompts per step, prompt <= 1024 (RECIPE §3) ---
        "data.train_files": data,
        "data.val_files": f"{paths['data_dir']}/val.parquet",
        "data.train_batch_size": st.prompts_per_step,
        "data.max_prompt_length": st.max_prompt_length,
        "data.max_response_length": st.max_completion_length,
        "data.filter_overlong_prompts": True,
        "data.truncation": "error",
        "data.seed": run.seed + st.seed,
        # --- the algorithm: GRPO, no KL, no entropy bonus (RECIPE §3) ---
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": st.scale_rewards == "group",
        "algorithm.use_kl_in_reward": False,
        # DAPO dynamic sampling: the closest upstream trick to the kit's substitution (see docs).
        "algorithm.filter_groups.enable": st.substitution,
        "algorithm.filter_groups.metric": "acc",
        "actor_rollout_ref.model.path": model,
        "actor_rollout_ref.model.enable_gradient_checkpointing": run.model.gradient_checkpointing,
        "actor_rollout_ref.model.use_remove_padding": True,
        "actor_rollout_ref.model.lora_rank": run.model.lora_rank,
        "actor_rollout_ref.model.lora_alpha": run.model.lora_alpha or 2 * run.model.lora_rank,
        f"{a}.optim.lr": st.learning_rate,
        f"{a}.optim.lr_scheduler_type": LR_SCHEDULES[st.lr_scheduler],
        f"{a}.optim.lr_warmup_steps": st.warmup_steps,
        f"{a}.optim.weight_decay": st.weight_decay,
        f"{a}.optim.clip_grad": st.max_grad_norm,
        f"{a}.grad_clip": st.max_grad_norm,
        f"{a}.clip_ratio_low": st.clip_low,
        f"{a}.clip_ratio_high": st.clip_high,
        f"{a}.loss_agg_mode": LOSS_AGG[st.loss_type],
        f"{a}.entropy_coeff": st.entropy_coef,
        f"{a}.use_kl_loss": st.kl_beta > 0,
        f"{a}.kl_loss_coef": st.kl_beta,
        f"{a}.kl_loss_type": "low_var_kl",  # TRL's beta term is the k3 estimator, verl's low_var_kl
        # One optimizer step per RL step: the mini-batch is the whole batch (verl counts prompts).
        f"{a}.ppo_mini_batch_size": st.prompts_per_step,
        f"{a}.ppo_epochs": 1,
        f"{a}.use_dynamic_bsz": True,
        f"{a}.ppo_max_token_len_per_gpu": seq_len,
        # --- rollouts: n = 8, the stage's temperature, top_p 1.0, top_k off (RECIPE §3) ---
        f"{r}.name": "vllm",
        f"{r}.n": st.group_size,
        f"{r}.temperature": float(temperature),
        f"{r}.top_p": st.top_p,
        f"{r}.top_k": st.top_k if st.top_k > 0 else -1,
        f"{r}.max_model_len": seq_len,
        f"{r}.gpu_memory_utilization": run.model.gpu_memory_utilization,
        f"{r}.tensor_model_parallel_size": min(2, gpus),  # kit choice, not the paper's
        f"{r}.log_prob_max_token_len_per_gpu": seq_len,
        # --- the kit's reward, logging each rollout's problem for the easy-drop (RECIPE §2, §8) ---
        "reward.custom_reward_function.path": paths["reward_fn"],
        "reward.custom_reward_function.name": "compute_score",
        "+reward.custom_reward_function.reward_kwargs.thinking": run.model.thinking,
        "+reward.custom_reward_function.reward_kwargs.log_dir": f"{paths['log_dir']}/stage{stage}",
        # --- schedule and machinery ---
        "trainer.total_training_steps": st.max_steps,
        "trainer.total_epochs": 1000,  # an upper bound: total_training_steps ends the stage
        "trainer.save_freq": st.save_steps,
        "trainer.test_freq": -1,
        "trainer.val_before_train": False,
        "trainer.nnodes": nodes,
        "trainer.n_gpus_per_node": gpus,
        "trainer.logger": ["console"],
        "trainer.project_name": "polaris-kit",
        "trainer.experiment_name": f"{run.preset}-stage{stage}",
        "trainer.default_local_dir": f"{paths['ckpt_dir']}/stage{stage}",
    }
    return o


def run_settings(
    preset: str | None, run_dir: str | Path | None, overrides: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """(preset, overrides) of an export: a run folder's stored ones (manifest.json), then yours.

    Unlike `polaris run`, where -p replaces a resumed run's stored set, here the given overrides
    go on top of the stored ones: the curated data and probe temperatures were made under those.
    """
    if run_dir is None:
        if preset is None:
            raise ConfigError("export: give a preset (--preset) or a run folder (--run-dir)")
        return preset, dict(overrides or {})
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(
            f"no run folder {run_dir}: --run-dir takes the folder `polaris run` wrote "
            "(reports/<run-id>)"
        )

    stored = Manifest.load(run_dir)
    if stored is None:  # a folder written by the notebooks alone has no manifest
        if preset is None:
            raise ConfigError(
                f"{run_dir} has no manifest.json: say which preset made it (--preset)"
            )
        return preset, dict(overrides or {})
    if preset is not None and preset != stored.data["preset"]:
        raise ConfigError(
            f"{run_dir} was made with preset {stored.data['preset']!r}, not {preset!r}: its "
            "curated data and probe temperatures belong to that preset; drop --preset"
        )
    merged = {"seed": stored.data.get("seed", 0), **stored.data.get("overrides", {})}
    return stored.data["preset"], {**merged, **(overrides or {})}


def _pool_unavailable(pool: str, data_dir, exc: Exception) -> Exception:
    """The pool's DataUnavailableError as one line that ends in the export's own ways out."""

    entry, root = catalog_entry(pool), resolve_data_dir(data_dir)
    cause = exc.__cause__  # the hub's own error; none when offline mode refused up front
    why = f"{type(cause).__name__}: {cause}" if cause else "offline mode is set"
    where = "the catalog has no local copy"
    fixes = ["go online (unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"]
    if entry.local:
        where = (
            f"{root} has no {entry.local}" if root else f"no data folder is set ({DATA_DIR_ENV})"
        )
        fixes.insert(0, f"--data-dir DIR (or {DATA_DIR_ENV}) holding {entry.local}")
    fixes += [
        "--run-dir RUN with a curated set (02_curate_by_difficulty)",
        "-p curation.pool NAME for a pool you have locally (e.g. math500)",
    ]
    return DataUnavailableError(
        f"stage-1 pool {pool!r} is missing: {where} and the hub dataset {entry.hub} cannot be "
        f"loaded ({why}). Ways out: " + "; ".join(fixes)
    )


def stage1_data(
    run: RunConfig, run_dir: str | Path | None, data_dir: str | Path | None
) -> tuple[pd.DataFrame, str]:
    """Stage 1's problems: the run's curated set (02) when it has one, else the preset's pool,
    uncurated (the returned source string says which)."""

    why = "UNCURATED: the difficulty filter (RECIPE §2) needs the kit's 02 step and --run-dir"
    if run_dir is not None:
        path = artifacts.step_dir(run_dir, artifacts.CURATE, create=False) / "curated.parquet"
        if path.exists():
            return pd.read_parquet(path), f"curated by the kit ({path})"
        why = f"UNCURATED: {path} does not exist (run 02_curate_by_difficulty for this run)"
    pool, cap = run.curation.pool, run.curation.max_problems
    if pool == "toy":
        df = load_dataset("toy", split="train", n=cap or 256, toy_cfg=run.toy, seed=run.seed)
    else:
        try:
            df = load_dataset(pool, data_dir=data_dir)
        except DataUnavailableError as exc:
            raise _pool_unavailable(pool, data_dir, exc) from exc
        except KeyError as exc:  # not in the catalog: a config mistake, not a missing file
            raise ConfigError(f"curation.pool: {exc.args[0]}") from exc
        if cap and cap < len(df):
            df = df.sample(n=cap, random_state=run.seed).sort_index().reset_index(drop=True)
    return df, f"pool {pool!r} from {df.attrs.get('origin', '?')}; {why}"


def _val_data(run: RunConfig, data_dir, fallback: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """verl needs a val file; validation is off (the kit's 05 step evaluates), so it may be small."""

    name = run.eval.benchmarks[0]
    try:
        if name == "toy":
            return load_dataset("toy", split="test", n=64, toy_cfg=run.toy, seed=run.seed), name
        return load_dataset(name, data_dir=data_dir), name
    except (FileNotFoundError, DataUnavailableError) as exc:
        return fallback.head(32), f"first 32 stage-1 rows ({name} unavailable: {exc})"


def _write_script(path: Path, text: str) -> Path:
    """Atomic, executable: a half-written launch script must never be there to run."""
    return artifacts.write_text(path, text, mode=0o755)


def export_verl(
    preset: str | None,
    out_dir: str | Path,
    *,
    run_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write data/stage1.parquet, data/val.parquet, run_verl.sh, verl_overrides.json, export.json.

    `run_dir`: a kit run folder: its stored preset and overrides (`run_settings`), its curated
    set and probe temperatures. `data_dir`: the catalog's local data folder (as
    $POLARIS_DATA_DIR). `overrides`: dotted config overrides as in notebooks. Returns the written
    paths by name.
    """
    preset, overrides = run_settings(preset, run_dir, overrides)
    run = get_preset(preset)
    if overrides:
        run = apply_overrides(run, overrides)
    try:  # every dataset name, before anything is written
        check_names(run)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = Path(out_dir)
    temps = {st.stage: stage_temperature(run, st.stage, run_dir) for st in run.stages}
    stages = {
        k: verl_overrides(run, k, temperature=t, paths=SHELL_PATHS) for k, (t, _) in temps.items()
    }
    train, train_src = stage1_data(run, run_dir, data_dir)
    val, val_src = _val_data(run, data_dir, train)

    suffix = run.model.instruction_suffix
    paths = {
        "stage1": to_verl(train, out / "data" / "stage1.parquet", suffix),
        "val": to_verl(val, out / "data" / "val.parquet", suffix),
        "overrides": artifacts.write_json(
            out / "verl_overrides.json", {str(k): v for k, v in stages.items()}
        ),
    }
    text = render_script(run, stages, {k: s for k, (_, s) in temps.items()}) + "\n"
    paths["script"] = _write_script(out / "run_verl.sh", text)
    nodes, gpus, gpu, hw_source = hardware(run)
    paths["manifest"] = artifacts.write_json(
        out / "export.json",
        {
            "preset": preset,
            "overrides": overrides,
            "verl_version": VERL_VERSION,
            "run_dir": str(run_dir) if run_dir is not None else None,
            "entry": ENTRY,
            "stage1_rows": len(train),
            "stage1_source": train_src,
            "val_rows": len(val),
            "val_source": val_src,
            "temperatures": {str(k): {"value": t, "source": s} for k, (t, s) in temps.items()},
            "hardware": {"nodes": nodes, "gpus_per_node": gpus, "gpu": gpu, "source": hw_source},
            "not_in_verl": [
                "in-batch substitution (verl re-samples: algorithm.filter_groups)",
                "rollout rescue",
                "skip-step when few groups are mixed",
            ],
        },
    )
    return paths
