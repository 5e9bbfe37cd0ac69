"""How many samples per problem a claim needs, and what they cost (`polaris plan-eval`, issue 15).

The statistics are `metrics.plan_samples` (problems held fixed: half-width z*sqrt(mean p(1-p) /
(N k))). This module feeds it: the per-problem pass rates of a finished run's evaluation (a
pilot), or an assumed accuracy; and turns the answer into generated tokens and device time at a
throughput that is either measured (the pilot run's own sampling timings), given by the user, or
an assumption that is printed as one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.config.sections import RunConfig
from polaris_lib.evaluate.run import timings
from polaris_lib.metrics import per_problem, plan_samples

ASSUMED_TOKENS_PER_S = {
    "cpu": (
        1132.0,
        "CPU: the kit's measurement of batched transformers sampling on the tiny preset, 2 cores "
        "(benchmarks/results/eval_throughput.json)",
    ),
    "gpu": (
        2000.0,
        "GPU: an ASSUMPTION, not a measurement — vLLM batched decoding of a <= 4B model on one "
        "24 GB GPU; pass --tokens-per-s with your own figure, or plan from a finished run "
        "(--run) to use its measured throughput",
    ),
}
"""Throughput used when neither a pilot run nor the user gives one: (tokens/s, where it comes from)."""
ASSUMED_FILL = 0.5
"""Mean response length as a fraction of max_new_tokens when no pilot says (an assumption)."""


def pilot(run_dir: str | Path, benchmark: str | None = None, checkpoint: str | None = None):
    """(per-problem pass rates, responses) of one pair of a finished evaluation (05) folder.

    Defaults: the last checkpoint evaluated, and the benchmark with the most samples per problem
    (the most informative pilot; the first such in evaluation order).
    """
    step = Path(run_dir) / artifacts.EVALUATION
    path = step / "responses.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run notebook 05 first (polaris run)")
    r = pd.read_parquet(path)
    cks = list(dict.fromkeys(r["checkpoint"]))
    benches = list(dict.fromkeys(r["benchmark"]))
    ck = checkpoint or cks[-1]
    k = r[r["checkpoint"] == ck].groupby("benchmark", sort=False)["sample_idx"].nunique()
    b = benchmark or (str(k.idxmax()) if len(k) else benches[0])
    if ck not in cks or b not in benches:
        raise ValueError(f"{path} has checkpoints {cks} and benchmarks {benches}, not {ck}/{b}")
    g = r[(r["checkpoint"] == ck) & (r["benchmark"] == b)]
    return per_problem(g), g


def measured_tokens_per_s(run_dir: str | Path) -> float | None:
    """Generated tokens per second of sampling over a finished evaluation's pairs, or None."""
    t = timings(Path(run_dir) / artifacts.EVALUATION)
    if t.empty or not {"tokens", "sample_s"} <= set(t.columns) or t["sample_s"].sum() <= 0:
        return None
    return float(t["tokens"].sum() / t["sample_s"].sum())


def plan_eval(
    half_width: float,
    *,
    cfg: RunConfig | None = None,
    run_dir: str | Path | None = None,
    benchmark: str | None = None,
    checkpoint: str | None = None,
    accuracy: float | None = None,
    problems: int | None = None,
    tokens_per_s: float | None = None,
) -> dict:
    """Samples per problem for a half-width, then responses, tokens and device hours.

    From a pilot (`run_dir`: its pass rates, its mean response length, its measured throughput)
    or from an assumed accuracy over `problems` problems (the preset's max_new_tokens x
    ASSUMED_FILL per response, the preset's assumed throughput). `tokens_per_s` overrides the
    throughput either way.
    """
    if tokens_per_s is not None and tokens_per_s <= 0:
        raise ValueError(f"tokens_per_s must be > 0, got {tokens_per_s}")
    if run_dir is not None:
        pp, g = pilot(run_dir, benchmark, checkpoint)
        plan = plan_samples(half_width, problems, pass_rates=pp)
        plan["source"] += f" of {g['checkpoint'].iloc[0]}/{g['benchmark'].iloc[0]} in {run_dir}"
        mean_tokens = float(g["n_tokens"].mean())
        tokens_note = "mean response length of the pilot"
        measured = measured_tokens_per_s(run_dir)
        rate, rate_note = measured, f"measured while sampling the pilot ({run_dir})"
        device = "cpu" if _toy(run_dir) else "gpu"
    else:
        if cfg is None:
            raise ValueError("give a pilot run or a config (preset) with an assumed accuracy")
        plan = plan_samples(half_width, problems, accuracy=accuracy)
        mean_tokens = ASSUMED_FILL * cfg.eval.max_new_tokens
        tokens_note = f"assumed: {ASSUMED_FILL:g} x max_new_tokens {cfg.eval.max_new_tokens}"
        rate, rate_note = None, ""
        device = "cpu" if cfg.model.name_or_path == "toy" else "gpu"
    if tokens_per_s is not None:
        rate, rate_note = float(tokens_per_s), "given (--tokens-per-s)"
    elif rate is None:
        rate, rate_note = ASSUMED_TOKENS_PER_S[device]
    tokens = plan["responses"] * mean_tokens
    return dict(
        plan,
        mean_response_tokens=mean_tokens,
        response_tokens_source=tokens_note,
        tokens=tokens,
        tokens_per_s=rate,
        throughput_source=rate_note,
        device=device,
        device_hours=tokens / rate / 3600,
    )


def _toy(run_dir) -> bool:
    cfg = Path(run_dir) / artifacts.EVALUATION / "config.json"
    return cfg.is_file() and artifacts.read_json(cfg).get("model", {}).get("name_or_path") == "toy"


def format_plan(p: dict) -> str:
    """The planner's answer as the lines `polaris plan-eval` prints."""
    unit = "GPU" if p["device"] == "gpu" else "CPU"
    floor = p["problems_floor"]
    lines = [
        f"target: ±{100 * p['half_width']:g} percentage points (95%, problems held fixed) on "
        f"{p['problems']} problems at accuracy {100 * p['accuracy']:.1f}%",
        f"from: {p['source']}",
        f"samples per problem: {p['samples_per_problem']}  ({p['responses']:,} responses)",
        f"tokens: {p['tokens']:,.0f}  ({p['mean_response_tokens']:,.0f} per response; "
        f"{p['response_tokens_source']})",
        f"{unit} time: {p['device_hours']:.2f} h at {p['tokens_per_s']:,.0f} tokens/s "
        f"({p['throughput_source']})",
    ]
    if floor == 0:  # the between-problem variance estimate was clipped at 0
        lines.append(
            f"note: the pilot's {p['problems']} problems differ no more than sampling noise "
            "explains, so it cannot size the over-problems half-width; a larger pilot can"
        )
    elif floor == floor:  # not NaN: known from a pilot
        lines.append(
            f"note: over problems (another draw of {p['problems']} problems) the half-width stays "
            f"about ±{100 * floor:.1f} points however many samples are drawn"
        )
    return "\n".join(lines)


def plan_table(
    half_widths, run_dir: str | Path, benchmark: str | None = None, checkpoint: str | None = None
) -> pd.DataFrame:
    """`plan_eval` from a pilot run for several target half-widths (fractions), one row each."""
    cols = [
        "half_width",
        "samples_per_problem",
        "responses",
        "tokens",
        "device_hours",
        "problems_floor",
        "source",
        "throughput_source",
    ]
    rows = [
        plan_eval(h, run_dir=run_dir, benchmark=benchmark, checkpoint=checkpoint)
        for h in half_widths
    ]
    return pd.DataFrame(rows)[cols]
