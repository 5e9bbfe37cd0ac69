"""Export a preset to verl (docs/scaling_out.md): stage data in verl's RL parquet + a launch script.

One mapping, `verl_overrides(run, stage, ...)`, turns a stage config into verl's hydra overrides;
the launch script and ``verl_overrides.json`` are both rendered from it, so no value is written
twice. Target: verl 0.9.x (`python3 -m verl.trainer.main_ppo`, its V1 trainer). What verl does not
do is said where it matters: verl's DAPO group filter (``algorithm.filter_groups``) re-samples
fresh prompts instead of the kit's in-batch substitution; rollout rescue has no verl counterpart;
the between-stage easy-drop (RECIPE §2) runs as a kit call in the script, on the per-prompt
rewards `polaris_lib.verl_reward` logs.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.config import ConfigError, RunConfig
from polaris_lib.presets import apply_overrides, get_preset
from polaris_lib.scale import hardware

VERL_VERSION = (
    "0.9.1"  # the verl release the override keys were checked against (tests/test_export.py)
)
ENTRY = "verl.trainer.main_ppo"
# TRL loss_type -> verl actor.loss_agg_mode (verl core_algos.agg_loss).
LOSS_AGG = {
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
    if run.stage(stage).temperature is not None:
        return float(run.stage(stage).temperature), f"stages[{stage - 1}].temperature"
    probe = None
    if run_dir is not None:
        probe = artifacts.step_dir(run_dir, artifacts.PROBE, stage, create=False) / "metrics.json"
        if probe.exists():
            return float(artifacts.read_json(probe)["probe/chosen_temperature"]), str(probe)
    raise ConfigError(
        f"stage {stage} has no temperature: the preset leaves it to the probe and "
        f"{probe or 'no --run-dir'} has none. Run 01_temperature_probe (STAGE={stage}) and pass "
        f"--run-dir, or set stages.{stage - 1}.temperature"
    )


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


def render_value(value: Any) -> str:
    """One hydra override value as shell text: True/False, [a,b], numbers; "${VAR}" paths quoted."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    if isinstance(value, str) and "${" in value:
        return f'"{value}"'  # the shell expands the variable; hydra sees a plain path
    return shlex.quote(str(value)) if isinstance(value, str) else repr(value)


def _stage_block(run: RunConfig, k: int, overrides: dict[str, Any], temp_source: str) -> list[str]:
    """Shell lines of stage k: the verl command, then the merge of its last checkpoint."""
    st = run.stage(k)
    seq = st.max_prompt_length + st.max_completion_length
    lines = [
        f"# ---- stage {k}: {st.max_steps} steps, {st.prompts_per_step} prompts x n={st.group_size}, "
        f"response <= {st.max_completion_length:,} tokens, T={overrides['actor_rollout_ref.rollout.temperature']:g} "
        f"({temp_source}) ----",
        f"if want_stage {k}; then",
    ]
    if seq > run.model.max_context:  # allowed by the guard at the top of the script
        # Reaches vLLM on this node; on a Ray cluster also set it before `ray start` everywhere.
        lines.append("  export VLLM_ALLOW_LONG_MAX_MODEL_LEN=1")
    lines.append(f"  python3 -m {ENTRY} \\")
    lines += [f"    {key}={render_value(v)} \\" for key, v in overrides.items()]
    lines += ['    "$@"', f"  merge_stage {k}", "fi", ""]
    return lines


def _between_block(run: RunConfig, k: int) -> list[str]:
    """Shell lines from stage k to k+1: the easy-drop (a kit call; verl has no such step)."""
    src, dst = f'"${{DATA_DIR}}/stage{k}.parquet"', f'"${{DATA_DIR}}/stage{k + 1}.parquet"'
    lines = [
        f"# ---- between stage {k} and {k + 1} (RECIPE §2) ----",
        f"if want_stage {k + 1}; then",
    ]
    if run.stage(k).easy_drop:
        thr = run.curation.easy_drop_threshold
        lines += [
            f"  # drop problems whose mean reward over stage {k} is > {thr:g}, from the per-rollout",
            "  # rewards polaris_lib.verl_reward logged (verl keeps no per-problem history)",
            "  python3 -c 'import sys; from polaris_lib.verl_reward import easy_drop_from_log as f; "
            "print(f(*sys.argv[1:4], threshold=float(sys.argv[4])))' \\",
            f'    "${{REWARD_LOG_DIR}}/stage{k}" {src} {dst} {thr!r}',
        ]
    else:
        lines.append(f"  cp {src} {dst}  # easy_drop is off for stage {k}")
    return lines + ["fi", ""]


def render_script(run: RunConfig, stages: dict[int, dict[str, Any]], temps: dict[int, str]) -> str:
    """The bash launch script: one verl command per stage, merge + easy-drop between stages."""
    nodes, gpus, gpu, source = hardware(run)
    k_all = " ".join(str(k) for k in stages)
    head = [
        "#!/usr/bin/env bash",
        f"# POLARIS recipe on verl: preset {run.preset!r}, generated by `polaris export verl` "
        "(polaris-kit).",
        "# Every value below comes from the preset; change the preset and re-export, do not edit.",
        f"# Needs verl=={VERL_VERSION} (+ vllm) and polaris-kit installed on every node.",
        f"# Hardware: {nodes} x {gpus} {gpu}; {source}. With several nodes, start a Ray",
        "# cluster first (`ray start --head` here, `ray start --address=<head>:6379` on the others)",
        "# and run this script on the head node.",
        "# Extra hydra overrides after the script name apply to every stage, e.g.",
        "#   bash run_verl.sh trainer.logger=[console,wandb]",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f'MODEL_PATH="${{MODEL_PATH:-{run.model.name_or_path}}}"',
        'DATA_DIR="${DATA_DIR:-${HERE}/data}"',
        'CKPT_DIR="${CKPT_DIR:-${HERE}/checkpoints}"',
        'REWARD_LOG_DIR="${REWARD_LOG_DIR:-${HERE}/reward_logs}"',
        "REWARD_FN=\"${REWARD_FN:-$(python3 -c 'import polaris_lib.verl_reward as m; "
        "print(m.__file__)')}\"",
        f'STAGES="${{STAGES:-{k_all}}}"  # e.g. STAGES="2 3" resumes after stage 1',
        'want_stage() { [[ " ${STAGES} " == *" $1 "* ]]; }',
        "merge_stage() {  # FSDP shards of stage $1's last checkpoint -> a Hugging Face folder",
        '  local step; step="$(cat "${CKPT_DIR}/stage$1/latest_checkpointed_iteration.txt")"',
        "  python3 -m verl.model_merger merge --backend fsdp --local_dir "
        '"${CKPT_DIR}/stage$1/global_step_${step}/actor" --target_dir "${CKPT_DIR}/stage$1/hf"',
        "}",
        "",
    ]
    body: list[str] = []
    for k in stages:  # fail before stage 1, not days later at the stage that cannot run
        seq = run.stage(k).max_prompt_length + run.stage(k).max_completion_length
        if seq > run.model.max_context:
            body += [
                f'if want_stage {k} && [[ "${{POLARIS_ALLOW_OVER_CONTEXT:-0}}" != 1 ]]; then',
                f'  echo "stage {k} needs {seq} positions; {run.model.name_or_path} has '
                f"{run.model.max_context}. The paper does not say how it handled this (RECIPE §5). "
                "Set POLARIS_ALLOW_OVER_CONTEXT=1 to let vLLM run past the native context "
                "(VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, plain RoPE), or add YaRN rope parameters to "
                f'the stage {k - 1} checkpoint config first." >&2',
                "  exit 3",
                "fi",
            ]
    for k, ov in stages.items():
        body += _stage_block(run, k, ov, temps[k])
        if k + 1 in stages:
            body += _between_block(run, k)
    return "\n".join(head + body)


def stage1_data(
    run: RunConfig, run_dir: str | Path | None, data_dir: str | Path | None
) -> tuple[pd.DataFrame, str]:
    """Stage 1's problems: the run's curated set (02), else the preset's pool, uncurated."""
    from polaris_lib.data import load_dataset

    if run_dir is not None:
        path = artifacts.step_dir(run_dir, artifacts.CURATE, create=False) / "curated.parquet"
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run 02_curate_by_difficulty for this run first, or export "
                "without --run-dir to get the preset's pool uncurated"
            )
        return pd.read_parquet(path), f"curated by the kit ({path})"
    pool, cap = run.curation.pool, run.curation.max_problems
    if pool == "toy":
        df = load_dataset("toy", split="train", n=cap or 256, toy_cfg=run.toy, seed=run.seed)
    else:
        df = load_dataset(pool, data_dir=data_dir)
        if cap and cap < len(df):
            df = df.sample(n=cap, random_state=run.seed).sort_index().reset_index(drop=True)
    why = "UNCURATED: the difficulty filter (RECIPE §2) needs the kit's 02 step and --run-dir"
    return df, f"pool {pool!r} from {df.attrs.get('origin', '?')}; {why}"


def _val_data(run: RunConfig, data_dir, fallback: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """verl needs a val file; validation is off (the kit's 05 step evaluates), so it may be small."""
    from polaris_lib.data import DataUnavailableError, load_dataset

    name = run.eval.benchmarks[0]
    try:
        if name == "toy":
            return load_dataset("toy", split="test", n=64, toy_cfg=run.toy, seed=run.seed), name
        return load_dataset(name, data_dir=data_dir), name
    except (FileNotFoundError, DataUnavailableError) as exc:
        return fallback.head(32), f"first 32 stage-1 rows ({name} unavailable: {exc})"


def export_verl(
    preset: str,
    out_dir: str | Path,
    *,
    run_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write data/stage1.parquet, data/val.parquet, run_verl.sh, verl_overrides.json, export.json.

    `run_dir`: a kit run folder (its curated set and probe temperatures); `overrides`: dotted
    config overrides as in notebooks. Returns the written paths by name.
    """
    run = get_preset(preset)
    if overrides:
        run = apply_overrides(run, overrides)
    out = Path(out_dir)
    temps = {st.stage: stage_temperature(run, st.stage, run_dir) for st in run.stages}
    stages = {
        k: verl_overrides(run, k, temperature=t, paths=SHELL_PATHS) for k, (t, _) in temps.items()
    }
    train, train_src = stage1_data(run, run_dir, data_dir)
    val, val_src = _val_data(run, data_dir, train)
    from polaris_lib.data import to_verl

    suffix = run.model.instruction_suffix
    paths = {
        "stage1": to_verl(train, out / "data" / "stage1.parquet", suffix),
        "val": to_verl(val, out / "data" / "val.parquet", suffix),
        "overrides": artifacts.write_json(
            out / "verl_overrides.json", {str(k): v for k, v in stages.items()}
        ),
    }
    script = out / "run_verl.sh"
    script.write_text(render_script(run, stages, {k: s for k, (_, s) in temps.items()}) + "\n")
    script.chmod(0o755)
    paths["script"] = script
    nodes, gpus, gpu, hw_source = hardware(run)
    paths["manifest"] = artifacts.write_json(out / "export.json", {
        "preset": preset, "overrides": overrides or {}, "verl_version": VERL_VERSION,
        "entry": ENTRY, "stage1_rows": len(train), "stage1_source": train_src,
        "val_rows": len(val), "val_source": val_src,
        "temperatures": {str(k): {"value": t, "source": s} for k, (t, s) in temps.items()},
        "hardware": {"nodes": nodes, "gpus_per_node": gpus, "gpu": gpu, "source": hw_source},
        "not_in_verl": ["in-batch substitution (verl re-samples: algorithm.filter_groups)",
                        "rollout rescue", "skip-step when few groups are mixed"],
    })  # fmt: skip
    return paths
