"""What a preset needs at paper scale: hardware and a cost estimate (RECIPE.md §3, §9).

The estimate is a calibrated proportion, not a simulation:
- tokens per step = prompts x group size x (mean prompt + mean response), with the mean response
  an assumed fraction of the stage's response budget (stated in every row);
- cost is proportional to tokens x parameters (rollout, log-prob and training FLOPs all scale with
  both; attention's extra cost at long length is ignored);
- one calibration point fixes the constant: Polaris-4B took 28 days on 32 H800s (~700 steps), so
  the qwen3-4b-paper row reproduces 21,504 GPU-hours by construction and the others are scaled
  from it.
"""

from __future__ import annotations

from polaris_lib.config.presets import PRESETS, get_preset
from polaris_lib.config.sections import RunConfig
from polaris_lib.scale_out.plan import spec_for

# (nodes, GPUs per node, GPU, where the numbers come from). Only Qwen3-4B's is published.
HARDWARE = {
    "qwen3-4b-paper": (4, 8, "H800", "paper: 4 nodes x 8 H800 (RECIPE §3, §9)"),
    "r1-distill-7b-paper": (4, 8, "H800", "not published; the kit assumes Qwen3-4B's setup"),
    "qwen3-1.7b-paper": (4, 8, "H800", "not published; the kit assumes Qwen3-4B's setup"),
}
SINGLE_GPU = (1, 1, "24 GB GPU", "the preset's own target: one consumer GPU")
CALIBRATION = ("qwen3-4b-paper", 28 * 24 * 32)  # RECIPE §9: 28 days x 32 H800 = 21,504 GPU-hours
MEAN_PROMPT_TOKENS = (
    200  # assumption: competition problems + chat template, well under the 1,024 cap
)
RESPONSE_FILL = 0.5  # assumption: the mean response uses half the stage's response budget


def hardware(run: RunConfig) -> tuple[int, int, str, str]:
    """(nodes, GPUs per node, GPU kind, source) the preset is meant for."""
    return HARDWARE.get(run.preset, SINGLE_GPU)


def stage_tokens(run: RunConfig, prompt_tokens: int, fill: float) -> list[dict]:
    """Per stage: steps, rollouts per step, assumed mean sequence and tokens per step."""
    rows = []
    for st in run.stages:
        seq = prompt_tokens + fill * st.max_completion_length
        rows.append(
            {
                "stage": st.stage,
                "steps": st.max_steps,
                "rollouts_per_step": st.rollouts_per_step,
                "mean_tokens_per_rollout": seq,
                "tokens_per_step": st.rollouts_per_step * seq,
            }
        )
    return rows


def _token_params(run: RunConfig, prompt_tokens: int, fill: float) -> float:
    tokens = sum(r["steps"] * r["tokens_per_step"] for r in stage_tokens(run, prompt_tokens, fill))
    return tokens * spec_for(run).params


def scale_table(
    presets: list[str] | None = None,
    *,
    prompt_tokens: int = MEAN_PROMPT_TOKENS,
    fill: float = RESPONSE_FILL,
):
    """One row per paper preset: steps, tokens per step, total tokens, GPU-hours, days on its nodes.

    >>> round(scale_table(["qwen3-4b-paper"]).gpu_hours[0])
    21504
    """
    import pandas as pd

    if not 0 < fill <= 1:
        raise ValueError(f"fill (mean response / budget) must be in (0, 1], got {fill}")
    names = presets or [p for p in PRESETS if p.endswith("-paper")]
    ref = get_preset(CALIBRATION[0])
    per_token_param = CALIBRATION[1] / _token_params(ref, prompt_tokens, fill)
    rows = []
    for name in names:
        run = get_preset(name)
        stages = stage_tokens(run, prompt_tokens, fill)
        nodes, gpus, gpu, source = hardware(run)
        hours = _token_params(run, prompt_tokens, fill) * per_token_param
        rows.append(
            {
                "preset": name,
                "model": run.model.name_or_path,
                "params_b": spec_for(run).params / 1e9,
                "stages": len(stages),
                "steps": sum(r["steps"] for r in stages),
                "rollouts_per_step": stages[0]["rollouts_per_step"],
                "tokens_per_step_m": [round(r["tokens_per_step"] / 1e6, 1) for r in stages],
                "total_tokens_b": sum(r["steps"] * r["tokens_per_step"] for r in stages) / 1e9,
                "gpu_hours": hours,
                "hardware": f"{nodes} x {gpus} {gpu}",
                "days": hours / (nodes * gpus) / 24,
                "hardware_source": source,
                "assumption": f"mean prompt {prompt_tokens} tok, mean response {fill:g} x budget; "
                f"calibrated on {CALIBRATION[0]} = {CALIBRATION[1]:,} GPU-h",
            }
        )
    return pd.DataFrame(rows)


def scale_markdown(**kwargs) -> str:
    """`scale_table` as the Markdown table docs/scaling_out.md shows."""
    t = scale_table(**kwargs)
    lines = [
        "| preset | model | params | steps | tokens/step (M, per stage) | total tokens | GPU-hours | hardware | days |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t.itertuples():
        lines.append(
            f"| {r.preset} | {r.model} | {r.params_b:.1f}B | {r.steps} | "
            f"{' / '.join(f'{x:g}' for x in r.tokens_per_step_m)} | {r.total_tokens_b:.1f}B | "
            f"{r.gpu_hours:,.0f} | {r.hardware} | {r.days:.0f} |"
        )
    return "\n".join(lines)
