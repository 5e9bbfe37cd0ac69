"""Per-component ablation of the POLARIS recipe on the toy, in two regimes (issue 14).

Each arm switches one component off (or swaps it) against the full recipe, with plain TRL GRPO as
the outside reference; every arm runs the same seeds, paired by seed, and is scored on the same
held-out problems (toy test split, avg@k at the eval temperature). Regimes are presets: `tiny`
(the demo's world) and `tiny-hard` (the toy in POLARIS's regime: many all-0 groups, truncation
at stage 1, saturation).

Shared per regime (computed once, recorded): the stage-1 probe on the warm start (its chosen
temperature is used by every stage of every arm except `fixed_T`; the pipeline would re-probe per
stage), curation of one pool drawn with seed 0 (pass rates at stage 1's length), the held-out
set and the warm start's score on it. Per (arm, seed): the arm's stages through the kit's own
stage code (polaris_lib.training), or TRL's GRPOTrainer for `plain`.

Figure: docs/ablation.png (every regime's summary; the report shows the same figure).
Results: one JSON line per finished (arm, seed) in benchmarks/results/ablation_<regime>[_sgd].runs.jsonl
(a rerun skips finished pairs, so an interrupted ablation resumes), and a summary
benchmarks/results/ablation_<regime>[_sgd].json: per arm the held-out accuracy, the paired
difference to `full` and to `plain` per seed, their mean and 95% t-interval over seeds; and the
regime table (group mix, skip, rescue and truncation rates per stage, from the `full` arm's logs).

    .venv/bin/python benchmarks/ablation.py --regime tiny-hard --arms full plain subst_off --seeds 0 1 2
    .venv/bin/python benchmarks/ablation.py --regime tiny-hard --optimizer sgd --lr 0.2 --arms plain skip_only full
    .venv/bin/python benchmarks/ablation.py --summarize     # rewrite the summaries and the figure
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts, curate, probe, training
from polaris_lib.artifacts import write_json
from polaris_lib.config import parse_value
from polaris_lib.config.overrides import apply_overrides
from polaris_lib.config.presets import get_preset
from polaris_lib.grading.grader import make_reward_fn
from polaris_lib.policy.load import load_policy
from polaris_lib.report.ablation import ablation_figure, load_ablations
from polaris_lib.report.html import png_of
from polaris_lib.training.grpo_config import to_grpo_config
from polaris_lib.training.stage import to_train_dataset

RESULTS = Path(__file__).parent / "results"
FIGURE = Path(__file__).parents[1] / "docs" / "ablation.png"
WORK = Path(os.environ.get("ABLATION_WORK", "/tmp/polaris-ablation"))
ALL_OFF = {
    "stages.*.substitution": "off",
    "stages.*.low_mixed_policy": "none",
    "stages.*.rescue": False,
    "stages.*.easy_drop": False,
}


@dataclass
class Arm:
    """One ablation arm: what it changes against the full recipe."""

    what: str
    overrides: dict = field(default_factory=dict)
    kind: str = "kit"  # kit: the kit's stages; plain: TRL's GRPOTrainer
    temperature: float | None = None  # None: the regime's probe choice
    curated: bool = True
    layout: str = "staged"  # staged | fixed_length | one_stage


ARMS = {
    "full": Arm("the full recipe as the preset runs it"),
    "plain": Arm(
        "TRL GRPOTrainer: one stage of all steps at the last length, T=1.0, raw pool, no extras",
        kind="plain",
        temperature=1.0,
        curated=False,
    ),
    "fixed_T": Arm("temperature 1.0 in every stage instead of the probe's", temperature=1.0),
    "no_curation": Arm("raw pool: problems solved n/n are kept", curated=False),
    "subst_released": Arm(
        "substitution as the authors' code ran it (copies re-graded, ~0 advantage)",
        {"stages.*.substitution": "released"},
    ),
    "subst_off": Arm("no substitution (skip rule kept)", {"stages.*.substitution": "off"}),
    "no_skip": Arm("no low-mixed skip rule", {"stages.*.low_mixed_policy": "none"}),
    "no_rescue": Arm("no rollout rescue", {"stages.*.rescue": False}),
    "no_easy_drop": Arm("no easy-drop between stages", {"stages.*.easy_drop": False}),
    "fixed_length": Arm("every stage at the last stage's length", layout="fixed_length"),
    "one_optimizer": Arm(
        "one stage of all steps at the last length (one optimizer, no easy-drop)",
        layout="one_stage",
    ),
    "skip_only": Arm(
        "the skip rule alone: substitution, rescue and easy-drop off",
        ALL_OFF | {"stages.*.low_mixed_policy": "skip"},
    ),
    "all_off": Arm("the kit's trainer and stages with every extra off", ALL_OFF),
    # A skipped step spends one of the stage's steps under `count` (the kit's default on tiny);
    # the authors' verl redraws instead: these two arms separate the rule from the lost steps.
    "skip_redraw": Arm(
        "the full recipe, a skipped step redrawn instead of spent (as the authors' verl)",
        {"stages.*.skipped_steps": "redraw"},
    ),
    "skip_only_redraw": Arm(
        "the skip rule alone, a skipped step redrawn instead of spent",
        ALL_OFF | {"stages.*.low_mixed_policy": "skip", "stages.*.skipped_steps": "redraw"},
    ),
}


# ----------------------------------------------------------------------------- shared per regime
def regime_config(regime: str, seed: int, args) -> object:
    over = {"seed": seed, "eval.max_problems": args.heldout}
    over |= {"eval.samples": {"toy": args.samples}}
    for item in args.set:
        key, _, value = item.partition("=")
        over[key] = parse_value(value)  # as `polaris run -p`
    if args.optimizer != "adamw_torch":
        over |= {"stages.*.optimizer": args.optimizer, "stages.*.learning_rate": args.lr}
    return apply_overrides(get_preset(regime), over)


def prepare(regime: str, args) -> dict:
    """Probe, curation, held-out set and warm-start score of a regime (cached in WORK)."""
    root = WORK / regime
    cached = root / "prepared.json"
    if cached.exists():
        return artifacts.read_json(cached) | {"root": str(root)}
    cfg = apply_overrides(regime_config(regime, 0, args), {"run_dir": str(root / "prep")})
    t0 = time.perf_counter()
    model, tok = load_policy(cfg)
    probe_dir = artifacts.step_dir(root / "prep", artifacts.PROBE, 1)
    grid = probe.run_probe(model, tok, cfg, probe_dir, probe.probe_problems(cfg), progress=False)
    table = probe.per_temperature(grid)
    choice = probe.choose_temperature(table, cfg.probe, samples=grid)
    temperature = float(choice["probe/chosen_temperature"])
    pool = curate.pool_problems(cfg)
    rates = curate.run_curation(
        model, tok, cfg, root / "prep" / "curate", pool, temperature, progress=False
    )
    curated, dropped = curate.select(pool, rates)
    for df in (pool, curated):
        df.attrs = {}  # the loader's validation report is not parquet metadata
    artifacts.write_parquet(root / "pool.parquet", pool)
    artifacts.write_parquet(root / "curated.parquet", curated)
    held = training.heldout_problems(cfg)
    held.attrs = {}
    warm = training.heldout_scores(cfg, None, held)
    artifacts.write_parquet(root / "heldout.parquet", held)
    artifacts.write_parquet(root / "warm.parquet", warm)
    out = dict(
        regime=regime,
        temperature=temperature,
        probe_table=table[
            [c for c in ("temperature", "accuracy", "zone", "chosen_share") if c in table]
        ].to_dict("records"),
        probe_choice={k: v for k, v in choice.items() if isinstance(v, int | float | str)},
        pool=len(pool),
        curated=len(curated),
        dropped_solved_all=len(dropped),
        curation_pass_rate_hist=rates.k.value_counts().sort_index().to_dict(),
        heldout_problems=len(held),
        warm_acc=float(warm.accuracy.mean()),
        seconds=round(time.perf_counter() - t0, 1),
    )
    write_json(cached, out)
    return out | {"root": str(root)}


# ----------------------------------------------------------------------------- arms
def stage_overrides(cfg, arm: Arm, temperature: float) -> dict:
    over = dict(arm.overrides)
    over |= {"stages.*.temperature": arm.temperature or temperature}
    last = cfg.stages[-1].max_completion_length
    if arm.layout == "fixed_length":
        over |= {"stages.*.max_completion_length": last}
    return over


def kit_arm(cfg, arm: Arm, problems: pd.DataFrame, temperature: float, run_dir: Path) -> tuple:
    """The arm through polaris_lib.training's stage code; returns (final checkpoint, stage logs)."""
    run = apply_overrides(cfg, stage_overrides(cfg, arm, temperature) | {"run_dir": str(run_dir)})
    if arm.layout == "one_stage":
        total = sum(s.max_steps for s in run.stages)
        run = apply_overrides(
            run,
            {
                "stages.0.max_steps": total,
                "stages.0.max_completion_length": run.stages[-1].max_completion_length,
            },
        )
        run = dataclasses.replace(
            run,
            stages=run.stages[:1],
            eval=dataclasses.replace(run.eval, checkpoints=["base", "stage1"]),
        )
    artifacts.write_parquet(
        artifacts.step_dir(run_dir, artifacts.CURATE) / "curated.parquet", problems
    )
    logs = []
    for k in range(1, len(run.stages) + 1):
        plan = training.plan_stage(run, k)
        out = artifacts.step_dir(run_dir, artifacts.GRPO_STAGE, k)
        data = training.load_stage_data(run, k)
        training.train_stage(run, plan, out, data)
        _, dropped = training.drop_easy(run, k, out, data)
        logs.append(stage_log(out, k, len(data), len(dropped)))
    return str(artifacts.checkpoint_dir(run_dir, len(run.stages)) / "final"), logs


def plain_arm(cfg, arm: Arm, problems: pd.DataFrame, run_dir: Path) -> tuple:
    """TRL's GRPOTrainer, one stage of the same total steps at the last length."""
    from trl import GRPOTrainer

    total = sum(s.max_steps for s in cfg.stages)
    last = cfg.stages[-1].max_completion_length
    run = apply_overrides(
        cfg, {"stages.0.max_steps": total, "stages.0.max_completion_length": last}
    )
    model, tok = load_policy(run, for_training=True)
    args = to_grpo_config(run, 1, arm.temperature, str(run_dir / "trl"), save_strategy="no")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=make_reward_fn(thinking=run.model.thinking),
        args=args,
        train_dataset=to_train_dataset(problems, run.model.instruction_suffix),
        processing_class=tok,
    )
    trainer.train()
    final = run_dir / "final"
    trainer.save_model(str(final))
    tok.save_pretrained(str(final))
    steps = training.steps_table(trainer.state.log_history)
    trunc = steps.get("completions/clipped_ratio", pd.Series(dtype=float))
    return str(final), [dict(stage=1, steps=len(steps), truncation=float(trunc.mean()))]


def stage_log(out: Path, stage: int, n_problems: int, n_dropped: int) -> dict:
    """Per-stage regime statistics from the stage's per-step table and reward log."""
    steps = pd.read_parquet(out / "steps.parquet")
    log = pd.DataFrame(artifacts.read_jsonl(out / "reward_log.jsonl"))

    def mean(col: str) -> float:
        return float(steps[col].mean()) if col in steps else float("nan")

    first = steps.iloc[0] if len(steps) else {}
    return dict(
        stage=stage,
        steps=len(steps),
        problems=n_problems,
        frac_all0=mean("polaris/frac_all0"),
        frac_all1=mean("polaris/frac_all1"),
        frac_mixed=mean("polaris/frac_mixed"),
        frac_all0_first_step=float(first.get("polaris/frac_all0", float("nan"))),
        skip_rate=mean("polaris/skipped"),
        substituted=mean("polaris/frac_substituted"),
        rescue_rate=float(log.rescued.mean()) if "rescued" in log else float("nan"),
        truncation=mean("completions/clipped_ratio"),
        easy_dropped=n_dropped,
    )


def run_arm(regime: str, name: str, seed: int, prep: dict, args) -> dict:
    arm = ARMS[name]
    root = Path(prep["root"])
    cfg = regime_config(regime, seed, args)
    problems = pd.read_parquet(root / ("curated.parquet" if arm.curated else "pool.parquet"))
    run_dir = root / f"{name}{args.suffix}_seed{seed}"
    t0 = time.perf_counter()
    if arm.kind == "plain":
        final, logs = plain_arm(cfg, arm, problems, run_dir)
    else:
        final, logs = kit_arm(cfg, arm, problems, prep["temperature"], run_dir)
    held = pd.read_parquet(root / "heldout.parquet")
    after = training.heldout_scores(cfg, final, held)
    return dict(
        arm=name,
        seed=seed,
        optimizer=args.optimizer,
        lr=cfg.stages[0].learning_rate,
        heldout_acc=float(after.accuracy.mean()),
        per_problem=after.set_index("problem_id").accuracy.round(4).to_dict(),
        stages=logs,
        seconds=round(time.perf_counter() - t0, 1),
    )


# ----------------------------------------------------------------------------- summary
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}


def paired(runs: list[dict], arm: str, ref: str) -> dict | None:
    """arm - ref held-out accuracy, paired by seed: per-seed differences, mean, 95% t-interval."""
    a = {r["seed"]: r["heldout_acc"] for r in runs if r["arm"] == arm}
    b = {r["seed"]: r["heldout_acc"] for r in runs if r["arm"] == ref}
    seeds = sorted(set(a) & set(b))
    if not seeds or arm == ref:
        return None
    d = [a[s] - b[s] for s in seeds]
    m = statistics.mean(d)
    half = (
        T95.get(len(d) - 1, 1.96) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else None
    )
    return dict(
        seeds=seeds,
        diffs=[round(x, 4) for x in d],
        mean=round(m, 4),
        lo=None if half is None else round(m - half, 4),
        hi=None if half is None else round(m + half, 4),
        positive=sum(x > 0 for x in d),
    )


def summarize(path_runs: Path, prep: dict, args_desc: dict) -> dict:
    runs = [json.loads(line) for line in path_runs.read_text().splitlines() if line.strip()]
    arms = [a for a in ARMS if any(r["arm"] == a for r in runs)]
    summary = {}
    for a in arms:
        acc = [r["heldout_acc"] for r in runs if r["arm"] == a]
        summary[a] = dict(
            what=ARMS[a].what,
            seeds=len(acc),
            heldout_acc=round(statistics.mean(acc), 4),
            heldout_acc_std=round(statistics.stdev(acc), 4) if len(acc) > 1 else None,
            gain_vs_warm=round(statistics.mean(acc) - prep["warm_acc"], 4),
            vs_full=paired(runs, a, "full"),
            vs_plain=paired(runs, a, "plain"),
        )
    regime_table = [
        {"seed": r["seed"], **s} for r in runs if r["arm"] == "full" for s in r["stages"]
    ]
    table = pd.DataFrame(regime_table)
    per_stage = (
        table.drop(columns="seed").groupby("stage").mean().round(4).reset_index().to_dict("records")
        if len(table)
        else []
    )
    return dict(
        what="held-out toy accuracy per ablation arm, paired by seed against full and plain",
        regime=prep["regime"],
        arm_order=arms,  # the harness's order (JSON objects are written with sorted keys)
        prepared={k: v for k, v in prep.items() if k != "root"},
        regime_table=per_stage,
        summary=summary,
        runs=[{k: v for k, v in r.items() if k != "per_problem"} for r in runs],
        **args_desc,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regime", default="tiny-hard", choices=["tiny", "tiny-hard"])
    ap.add_argument("--arms", nargs="+", default=["full", "plain"], choices=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--heldout", type=int, default=128, help="held-out toy problems")
    ap.add_argument("--samples", type=int, default=4, help="samples per held-out problem")
    ap.add_argument("--optimizer", default="adamw_torch", choices=["adamw_torch", "sgd"])
    ap.add_argument("--lr", type=float, default=None, help="learning rate (sgd arms)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summarize", action="store_true", help="only rewrite the summary")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a preset override for every arm (smoke runs: stages.*.max_steps=1)",
    )
    ap.add_argument("--results", default=str(RESULTS), help="folder for the result files")
    args = ap.parse_args()
    if args.optimizer == "sgd" and args.lr is None:
        ap.error("--optimizer sgd needs --lr (Adam's 1e-4 is far too small a step for SGD)")
    args.suffix = "" if args.optimizer == "adamw_torch" else f"_{args.optimizer}"

    import torch

    torch.set_num_threads(args.threads)
    name = f"ablation_{args.regime}{args.suffix}"
    results = Path(args.results)
    runs_path, out = results / f"{name}.runs.jsonl", results / f"{name}.json"
    prep = prepare(args.regime, args)
    done = set()
    if runs_path.exists():
        done = {
            (r["arm"], r["seed"]) for r in map(json.loads, runs_path.read_text().splitlines()) if r
        }
    t_start = time.perf_counter()
    if not args.summarize:
        for seed in args.seeds:  # seed-major: every arm gets seed 0 before any gets seed 1
            for arm in args.arms:
                if (arm, seed) in done:
                    continue
                rec = run_arm(args.regime, arm, seed, prep, args)
                artifacts.append_jsonl(runs_path, [rec])
                print(json.dumps({k: v for k, v in rec.items() if k != "per_problem"}), flush=True)
    desc = dict(
        heldout_problems=args.heldout,
        samples_per_problem=args.samples,
        optimizer=args.optimizer,
        lr=args.lr,
        wall_seconds_this_call=round(time.perf_counter() - t_start, 1),
        machine=dict(cpu_count=os.cpu_count(), platform=platform.platform(), threads=args.threads),
    )
    if runs_path.exists():
        write_json(out, summarize(runs_path, prep, desc))
        print(json.dumps(artifacts.read_json(out)["summary"], indent=1))
        fig = ablation_figure(load_ablations(results))
        if fig is not None and results == RESULTS:  # all regimes in one figure, for the README
            artifacts.write_bytes(FIGURE, png_of(fig))


if __name__ == "__main__":
    main()
