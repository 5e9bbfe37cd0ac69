"""The length-extrapolation experiment of notebook 04 (RECIPE.md §6), at the preset's scale.

The paper evaluated Polaris-4B with and without YaRN at several maximum lengths and compared the
accuracy of responses per length bucket (< L/2, L/2..L, > L; L = the trained length). Here the
same experiment runs on any checkpoint for the RoPE variants of `polaris_lib.policy.rope` (none, YaRN,
linear interpolation). On the tiny preset the items are toy sums with more terms than training
saw, so their traces need more than the trained length (and the longest, more positions than the
model was built with); with a real model they are the AIME problems, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.artifacts.resume import PartStore
from polaris_lib.config.sections import RunConfig
from polaris_lib.data import catalog_entry, load_dataset
from polaris_lib.figure_style import run_caption
from polaris_lib.metrics import length_bucket_accuracy, summarize
from polaris_lib.policy.load import load_policy, weights_key
from polaris_lib.policy.rollouts import rollout
from polaris_lib.policy.rope import VARIANTS
from polaris_lib.policy.sampling import loaded_model
from polaris_lib.toy.task import make_problems

EXTRA_TERMS = 3
"""Toy items go up to toy.max_terms + this many terms: traces past the trained length L, the
longest past the positions the model was built with (8 terms fit both; 11 need 168 positions)."""
PAPER_BENCHMARKS = ("aime24", "aime25")
"""What the paper's YaRN analysis sampled (1,920 rollouts on AIME24/25)."""


def checkpoint_for(cfg: RunConfig, stage: int | None) -> str | None:
    """The policy to extend: None = the last stage's final checkpoint, 0 = base, k = stage k."""
    name = "final" if stage is None else "base" if stage == 0 else f"stage{stage}"
    return artifacts.named_checkpoint(cfg.run_dir, name, len(cfg.stages))


def trained_length(cfg: RunConfig) -> int:
    """L: the last stage's response length (the longest the policy was trained to write)."""
    return cfg.stages[-1].max_completion_length


def figure_caption(cfg: RunConfig, checkpoint: str | None, n_problems: int) -> str:
    """Figure caption: preset, model, seed, checkpoint, sizes and the YaRN settings."""
    y, e = cfg.yarn, cfg.eval
    return run_caption(
        cfg,
        checkpoint or "base",
        f"{n_problems} problems × {y.n_samples} samples",
        f"T {e.temperature}",
        f"YaRN factor {y.factor:g} over {y.original_max_position_embeddings} positions, "
        f"attention factor {y.attention_factor:g}",
    )


# ----------------------------------------------------------------------------- the experiment
def extrapolation_problems(cfg: RunConfig, data_dir=None) -> pd.DataFrame:
    """Items for the experiment: toy sums past the trained length, else the eval benchmarks."""
    n = cfg.yarn.n_problems or None
    if cfg.model.name_or_path == "toy":
        t = cfg.toy
        lo, hi = max(t.min_terms, t.max_terms - 1), t.max_terms + EXTRA_TERMS
        return make_problems(t, "test", n or 64, seed=cfg.seed, min_terms=lo, max_terms=hi)
    names = [b for b in cfg.eval.benchmarks if b in PAPER_BENCHMARKS] or cfg.eval.benchmarks
    limit = cfg.eval.max_problems or None
    frames = [
        load_dataset(b, data_dir=data_dir, limit=limit)
        for b in names
        if not catalog_entry(b).generator
    ]
    return pd.concat(frames, ignore_index=True).head(n)


RUNS = "runs"
"""Sub-folder of the step holding one finished part per (RoPE variant, maximum length)."""


def run_settings(cfg: RunConfig, checkpoint: str | None, variant: str, length: int, problems):
    """Everything that determines one (variant, length) run's responses (its resume key)."""
    e = cfg.eval
    return dict(
        model=cfg.model.name_or_path,
        checkpoint_path=checkpoint,
        weights=weights_key(cfg, checkpoint),
        variant=variant,
        factor=cfg.yarn.factor,
        max_new_tokens=length,
        k=cfg.yarn.n_samples,
        problems=sorted(problems["problem_id"]),
        temperature=e.temperature,
        top_p=e.top_p,
        top_k=e.top_k,
        seed=cfg.seed,
        suffix=cfg.model.instruction_suffix,
        thinking=cfg.model.thinking,
    )


def run_extrapolation(
    cfg: RunConfig,
    out: str | Path,
    problems: pd.DataFrame,
    *,
    checkpoint: str | None,
    variants=VARIANTS,
    load_fn: Callable | None = None,
    sample_fn: Callable | None = None,
    grader=None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Sample and grade every (variant, max length); resumable (one finished part per run under runs/).

    Sampling settings come from cfg.eval (temperature, top_p, top_k), k = yarn.n_samples, the
    budget is each of yarn.eval_max_lengths. Returns results.parquet's rows.
    """
    store = PartStore(Path(out) / RUNS)
    frames = []
    for v in variants:
        runs = {
            length: run_settings(cfg, checkpoint, v, length, problems)
            for length in cfg.yarn.eval_max_lengths
        }
        todo = [n for n, s in runs.items() if not store.done(f"{v}__len{n}", s)]
        if todo:  # one engine per variant: a vLLM one is released before the next starts
            with loaded_model((load_fn or load_policy)(cfg, checkpoint, v)) as m:
                for length in todo:
                    s = runs[length]
                    df, timing = rollout(
                        m.model,
                        m.tokenizer,
                        problems,
                        n=s["k"],
                        temperature=s["temperature"],
                        top_p=s["top_p"],
                        top_k=s["top_k"],
                        max_new_tokens=length,
                        seed=s["seed"],
                        suffix=s["suffix"],
                        thinking=s["thinking"],
                        grader=grader,
                        sample_fn=sample_fn,
                    )
                    df.insert(0, "max_length", length)
                    df.insert(0, "variant", v)
                    store.write(f"{v}__len{length}", df, s, **timing)
                    log(
                        f"{v} @ {length} tokens: accuracy {df['correct'].mean():.3f}, "
                        f"truncated {df['truncated'].mean():.2f}"
                    )
        frames += [store.read(f"{v}__len{n}") for n in runs]
    res = pd.concat(frames, ignore_index=True)
    extra = [c for c in ("difficulty", "trace_len") if c in problems.columns]
    return res.merge(problems[["problem_id", *extra]], on="problem_id", how="left")


def avg_vs_length(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """avg@k with its bootstrap interval per (variant, max length)."""
    t = results.assign(checkpoint=results["variant"], benchmark=results["max_length"])
    s = summarize(t, n_boot=n_boot, seed=seed)
    return s.rename(columns={"checkpoint": "variant", "benchmark": "max_length"})


def bucket_accuracy(results: pd.DataFrame, trained_length: int) -> pd.DataFrame:
    """Accuracy per response-length bucket against the trained length L, per variant and budget."""
    return length_bucket_accuracy(results, trained_length, by=["variant", "max_length"])


def describe_items(problems: pd.DataFrame, length: int) -> pd.DataFrame:
    """Items per group (toy: number of terms) with their reference trace lengths against L."""
    if "trace_len" not in problems.columns:
        return problems.groupby("source").size().rename("items").to_frame()
    t = problems.groupby("difficulty")["trace_len"].agg(
        items="count", trace_min="min", trace_max="max"
    )
    t["needs_more_than_L"] = t["trace_min"] > length
    return t


def accuracy_by_item(results: pd.DataFrame, column: str = "difficulty") -> pd.DataFrame:
    """Accuracy per item group (toy: number of terms) and variant, at the largest budget."""
    if column not in results.columns:
        column = "problem_id"
    top = results[results["max_length"] == results["max_length"].max()]
    t = top.groupby([column, "variant"], sort=True)["correct"].mean().unstack("variant")
    return t[[v for v in VARIANTS if v in t.columns]]


def findings(avg: pd.DataFrame, buckets: pd.DataFrame, length: int) -> str:
    """The result in words, from the tables (no judgement added): avg@k and > L accuracy."""
    top = avg["max_length"].max()
    lines = [f"At the largest budget ({top} tokens):"]
    long = buckets[(buckets["max_length"] == top) & (buckets["bucket"] == f"> {length:g}")]
    for r in avg[avg["max_length"] == top].to_dict("records"):
        b = long[long["variant"] == r["variant"]]
        acc = f"{b['accuracy'].iloc[0]:.3f} over {int(b['n'].iloc[0])}" if len(b) else "none"
        lines.append(
            f"- {r['variant']}: avg@{r['k']} {r['avg']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}], "
            f"truncated {r['truncation_rate']:.2f}; responses longer than L={length}: {acc}"
        )
    return "\n".join(lines)


def metrics(avg, buckets, check, length: int, loss: pd.DataFrame | None = None) -> dict:
    """metrics.json keys yarn/...: YaRN took effect, avg@k per variant and budget, > L accuracy."""
    y = check.set_index("variant").loc["yarn"] if "yarn" in set(check["variant"]) else None
    none = check.set_index("variant").loc["none"]
    out = {"yarn/trained_length": length}
    if y is not None:
        out.update(
            {
                "yarn/applied": bool(y["yarn_applied"]),
                "yarn/factor": y["factor"],
                "yarn/rope_theta_kept": bool(y["rope_theta"] == none["rope_theta"]),
                "yarn/attention_factor": y["attention_factor"],
                "yarn/logit_diff_beyond": y["logit_diff_beyond"],
            }
        )
    for r in avg.to_dict("records"):
        out[f"yarn/{r['variant']}/avg@{r['k']}@{r['max_length']}"] = r["avg"]
    for r in (loss if loss is not None else pd.DataFrame()).to_dict("records"):
        out[f"yarn/{r['variant']}/loss_inside"] = r["loss_inside"]
        out[f"yarn/{r['variant']}/loss_beyond"] = r["loss_beyond"]
    top = buckets[buckets["max_length"] == buckets["max_length"].max()]
    for r in top.to_dict("records"):
        out[f"yarn/{r['variant']}/acc_{_bucket_key(r['bucket'], length)}"] = r["accuracy"]
        out[f"yarn/{r['variant']}/n_{_bucket_key(r['bucket'], length)}"] = r["n"]
    return out


def _bucket_key(bucket: str, length: int) -> str:
    return {"<": "below_half_L", ">": "above_L"}.get(str(bucket)[0], "half_L_to_L")


ARTIFACTS = [
    "config.json",
    "metrics.json",
    "rope_check.parquet",
    "results.parquet",
    "avg_vs_length.parquet",
    "length_buckets.parquet",
    "position_loss.parquet",
    "fig_avg_vs_length.png",
    "fig_length_buckets.png",
    "fig_loss_by_position.png",
]
"""Artifacts of a finished 04 step."""


def check_artifacts(step: str | Path) -> dict:
    """Validate a finished 04 folder (tables' columns, YaRN took effect); returns its metrics."""

    step = Path(step)
    missing = [f for f in ARTIFACTS if not (step / f).exists()]
    if missing:
        raise ValueError(f"{step}: missing {missing}")
    res = pd.read_parquet(step / "results.parquet")
    need = {"variant", "max_length", "problem_id", "sample_idx", "correct", "n_tokens"}
    if not need <= set(res.columns):
        raise ValueError(f"{step}/results.parquet lacks {sorted(need - set(res.columns))}")
    m = artifacts.read_json(step / "metrics.json")
    if not m.get("yarn/applied") or not m.get("yarn/rope_theta_kept"):
        raise ValueError(f"{step}: YaRN did not take effect or lost rope_theta (metrics.json)")
    return m
