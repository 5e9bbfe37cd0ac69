"""The `polaris` command: run the pipeline, plan GPU memory, build reports, export, register a kernel.

polaris run --preset tiny [--run-id X] [--seed N] [-p stages.*.max_steps 5 ...] [--steps 01,02]
polaris plan --preset qwen3-1.7b-24gb --gpu-memory 24
polaris plan-eval --half-width 1 --run RUN_ID  |  polaris plan-eval --half-width 1 --accuracy 80 --problems 30 --preset P
polaris report RUN_ID            |  polaris report --compare RUN_A RUN_B
polaris export verl --preset qwen3-4b-paper [--run-dir reports/X] [--data-dir D] [-p N V] [--out O]
polaris kernel [--name polaris-kit] [--user]
polaris presets                  |  polaris config show --preset tiny [-p N V]  |  polaris --version
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from pathlib import Path

from polaris_lib.config import PRESETS, ConfigError, apply_overrides, get_preset, parse_value
from polaris_lib.data import DataUnavailableError
from polaris_lib.evaluate import format_plan as format_eval_plan
from polaris_lib.evaluate import plan_eval
from polaris_lib.pipeline import (
    QUICK_OVERRIDES,
    RunInUse,
    StepFailed,
    register_lab_kernel,
    run_pipeline,
)
from polaris_lib.release import ExportError, export_model
from polaris_lib.report import Run, build_compare_report, build_report, verdict
from polaris_lib.scale_out import (
    as_p_flags,
    export_verl,
    fitting_overrides,
    hardware,
    plan_run,
    scale_table,
)


def gib(text: str) -> float:
    """--gpu-memory: a positive, finite number of GiB."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a GPU memory size: give a positive number of GiB, e.g. 24 or 80"
        )
    return value


def _override_pairs(args: list[str]) -> list[tuple[str, str]]:
    """One -p occurrence: `NAME VALUE`, or one or more `NAME=VALUE`."""
    if len(args) == 2 and "=" not in args[0]:
        return [(args[0], args[1])]
    if all("=" in a and not a.startswith("=") for a in args):
        return [tuple(a.split("=", 1)) for a in args]
    raise ConfigError(
        f"-p {' '.join(args)}: give -p NAME VALUE or -p NAME=VALUE "
        "(e.g. -p probe.n_samples 4, -p probe.n_samples=4)"
    )


def _overrides(groups: list[list[str]] | None) -> dict | None:
    if groups is None:
        return None
    return {name: parse_value(value) for g in groups for name, value in _override_pairs(g)}


def _add_override_arg(
    p: argparse.ArgumentParser,
    stored: str = "Given on an existing run, merges into its stored overrides "
    "(--reset-overrides starts from the preset).",
) -> None:
    p.add_argument(
        "-p",
        "--param",
        nargs="+",
        action="append",
        metavar="NAME VALUE|NAME=VALUE",
        help="dotted config override, e.g. -p probe.n_samples 4 -p 'stages.*.max_steps=5' "
        f"(VALUE parsed as JSON when it parses). {stored}",
    )


EXAMPLES = {
    None: """examples:
  polaris run --preset tiny                      the whole pipeline on CPU (minutes)
  polaris presets                                what each preset needs and costs
  polaris plan --preset qwen3-1.7b-24gb --gpu-memory 24
  polaris run --help                             more examples per command""",
    "run": """examples:
  polaris run --preset tiny --run-id demo
  polaris run --run-id demo                      resume: stored preset, seed and -p values
  polaris run --run-id demo -p eval.n_bootstrap=500 --yes
                                                 merge one change; re-run what it invalidates
  polaris run --run-id demo --reset-overrides -p probe.n_samples 4
  polaris run --preset tiny --quick --steps 01,02
  polaris run --run-id demo --rerun-from 05""",
    "plan": """examples:
  polaris plan --preset qwen3-1.7b-24gb --gpu-memory 24
  polaris plan --preset qwen3-4b-24gb --gpu-memory 16 -p model.load_in_4bit=true
exit status: 0 when every stage fits, 1 when not (a combined set of -p flags is printed)""",
    "plan-eval": """examples:
  polaris plan-eval --half-width 1 --run demo    from the run's evaluation (05) as a pilot
  polaris plan-eval --half-width 2 --run demo --benchmark toy --checkpoint stage3
  polaris plan-eval --half-width 1 --accuracy 80 --problems 30 --preset qwen3-4b-24gb
  polaris plan-eval --half-width 1 --accuracy 80 --problems 30 --preset qwen3-4b-24gb --tokens-per-s 3500
the half-width is the 95% interval with the problems held fixed, in percentage points""",
    "report": """examples:
  polaris report demo
  polaris report --compare demo demo-seed1 --out reports/compare""",
    "export": """examples:
  polaris export model --run-dir reports/demo --out exports/demo-model
  polaris export model --run-dir reports/demo --stage 2 --push-to-hub me/demo-stage2
  polaris export verl --preset qwen3-4b-paper
  polaris export verl --run-dir reports/demo --data-dir /data/polaris""",
    "kernel": """examples:
  polaris kernel --user""",
    "presets": """examples:
  polaris presets""",
    "config": """examples:
  polaris config show --preset tiny
  polaris config show --preset qwen3-4b-24gb -p 'stages.*.max_steps=5'""",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("polaris-kit")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:

    ap = argparse.ArgumentParser(
        prog="polaris",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES[None],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"polaris-kit {_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    r = add("run", "run or resume the notebook pipeline for a preset")
    r.add_argument(
        "--preset", choices=PRESETS, help="preset (default: the run's stored one, else tiny)"
    )
    r.add_argument(
        "--run-id", help="run folder name under --reports-dir (default: the preset name)"
    )
    r.add_argument("--seed", type=int, help="global seed (default: stored, else 0)")
    _add_override_arg(r)
    r.add_argument(
        "--reset-overrides",
        action="store_true",
        help="drop the run's stored overrides: only this command's -p (and --quick) apply",
    )
    r.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="re-run finished steps a config change invalidates without asking "
        "(needed when not on a terminal)",
    )
    r.add_argument(
        "--quick",
        action="store_true",
        help="minimum sizes for a fast end-to-end check (pipeline.QUICK_OVERRIDES; -p values win)",
    )
    r.add_argument("--steps", help="run only these steps (comma-separated prefixes: 01,02,03_grpo)")
    r.add_argument("--rerun-from", metavar="STEP", help="re-run STEP (prefix) and all after it")
    r.add_argument("--compare", nargs="+", metavar="RUN_ID", help="also build a compare report")
    r.add_argument("--reports-dir", default="reports", help="where run folders live")
    r.add_argument("--notebooks-dir", default="notebooks", help="notebooks to execute")
    r.add_argument("--heartbeat", type=float, default=30.0, help="seconds between progress lines")

    p = add("plan", "estimate GPU memory per stage of a preset")
    p.add_argument("--preset", required=True, choices=PRESETS)
    p.add_argument("--gpu-memory", type=gib, default=24.0, help="GPU memory in GiB (default 24)")
    _add_override_arg(p)

    pe = add(
        "plan-eval",
        "samples per problem for a target 95% half-width, and the device time they cost",
    )
    pe.add_argument(
        "--half-width",
        type=float,
        required=True,
        help="target half-width in percentage points (1 = ±1 point), problems held fixed",
    )
    pe.add_argument("--run", metavar="RUN_ID", help="a run whose evaluation (05) is the pilot")
    pe.add_argument("--reports-dir", default="reports", help="where run folders live")
    pe.add_argument("--benchmark", help="the pilot's benchmark (default: the first real one)")
    pe.add_argument("--checkpoint", help="the pilot's checkpoint (default: the last evaluated)")
    pe.add_argument("--accuracy", type=float, help="no pilot: assumed accuracy in percent")
    pe.add_argument("--problems", type=int, help="problems in the benchmark (with --accuracy)")
    pe.add_argument(
        "--preset",
        choices=PRESETS,
        default="tiny",
        help="no pilot: the preset whose max_new_tokens and device set the cost (default tiny)",
    )
    _add_override_arg(pe, "")
    pe.add_argument(
        "--tokens-per-s", type=float, help="generation throughput to cost with (tokens/s)"
    )

    rep = add("report", "rebuild report.html from a run folder's files")
    rep.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    rep.add_argument("--compare", nargs="+", metavar="RUN_ID", help="overlay two or more runs")
    rep.add_argument("--reports-dir", default="reports")
    rep.add_argument("--out", help="output folder (compare default: reports/compare-<a>-<b>)")

    e = add("export", "export a run's trained policy (model), or a preset or run to verl (verl)")
    e.add_argument("target", choices=["model", "verl"])
    e.add_argument("--stage", type=int, help="model: the stage to export (default: the last)")
    e.add_argument(
        "--push-to-hub", metavar="REPO", help="model: upload the folder (needs the hub online)"
    )
    e.add_argument("--preset", choices=PRESETS, help="preset (default: the --run-dir run's)")
    e.add_argument(
        "--run-dir",
        help="a run folder (reports/<run-id>): its preset, overrides, "
        "curated stage-1 set and probe temperatures; without it (or without its 02 "
        "step) stage 1 is the preset's pool, uncurated",
    )
    e.add_argument(
        "--data-dir",
        help="local data folder of the dataset catalog "
        "(same meaning as $POLARIS_DATA_DIR, which it overrides)",
    )
    _add_override_arg(e, "Applied on top of the --run-dir run's stored overrides.")
    e.add_argument("--out", help="output folder (default: exports/<run folder name or preset>)")

    k = add("kernel", "register this environment as a JupyterLab kernel")
    k.add_argument("--name", default="polaris-kit")
    k.add_argument("--user", action="store_true", help="install in the user's Jupyter dir")

    add("presets", "list the presets: hardware, model, stages and what a run costs")

    c = add("config", "show the resolved config of a preset (plus -p overrides)")
    c.add_argument("action", choices=["show"])
    c.add_argument("--preset", default="tiny", choices=PRESETS, help="preset (default tiny)")
    _add_override_arg(c, "")
    return ap


def cmd_run(a: argparse.Namespace) -> int:

    overrides = _overrides(a.param)
    if a.quick:
        overrides = {**QUICK_OVERRIDES, **(overrides or {})}
    try:
        res = run_pipeline(
            a.preset,
            a.run_id,
            seed=a.seed,
            overrides=overrides,
            steps=a.steps,
            rerun_from=a.rerun_from,
            reports_dir=a.reports_dir,
            notebooks_dir=a.notebooks_dir,
            heartbeat_s=a.heartbeat,
            reset_overrides=a.reset_overrides,
            confirm=_confirm_rerun(a.yes),
        )
    except StepFailed as exc:
        print(f"\n[polaris] FAILED: {exc}", file=sys.stderr)
        print(
            "[polaris] fix the cause and rerun the same command: finished steps are kept",
            file=sys.stderr,
        )
        return 1
    if a.compare:
        _compare([res.run_dir.name, *a.compare], a.reports_dir, None)
    # The run ends with one line: where the report is, and what it says.
    where = res.report or f"{res.run_dir} (no report yet)"
    print(f"[polaris] {res.status}: {where} · {verdict(Run.load(res.run_dir))}")
    return 0


def _confirm_rerun(yes: bool):
    """`confirm` for run_pipeline: --yes, else ask on a terminal, else refuse (exit 2)."""

    def confirm(steps: list[str], why: str) -> bool:
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return False
        print(f"[polaris] {why}: this re-runs {len(steps)} finished step(s):")
        for name in steps:
            print(f"    {name}")
        print("[polaris] their folders are moved aside into superseded/, not deleted.")
        try:
            answer = input("Re-run them? [y/N] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")

    return confirm


def cmd_plan(a: argparse.Namespace) -> int:
    cfg = get_preset(a.preset)
    ov = _overrides(a.param)
    cfg = apply_overrides(cfg, ov) if ov else cfg
    table = plan_run(cfg, a.gpu_memory)
    print(f"preset {a.preset} ({cfg.model.name_or_path}) on a {a.gpu_memory:g} GiB GPU")
    print(format_plan(table))
    if bool(table["fits"].all()):
        return 0
    fix = fitting_overrides(cfg, a.gpu_memory)
    if not fix:
        print(
            f"\nno combination of the planner's changes fits {a.preset} on {a.gpu_memory:g} GiB: "
            "use a larger GPU (--gpu-memory) or a smaller preset (polaris presets)"
        )
        return 1
    every = as_p_flags({**(ov or {}), **fix})  # the user's own -p values, then the fix
    print(f"\nto make every stage fit, add these overrides (all together):\n    {as_p_flags(fix)}")
    print(f"check: polaris plan --preset {a.preset} --gpu-memory {a.gpu_memory:g} {every}")
    print(f"run:   polaris run --preset {a.preset} {every}")
    return 1


def cmd_plan_eval(a: argparse.Namespace) -> int:
    """How many samples per problem a half-width needs (pilot run or assumed accuracy)."""
    if (a.run is None) == (a.accuracy is None):
        print(
            "polaris plan-eval: give --run RUN_ID (a pilot) or --accuracy PERCENT", file=sys.stderr
        )
        return 2
    if a.accuracy is not None and not a.problems:
        print("polaris plan-eval: --accuracy needs --problems N", file=sys.stderr)
        return 2
    if not 0 < a.half_width < 100:
        print(
            f"polaris plan-eval: --half-width is in percentage points, in (0, 100); got "
            f"{a.half_width:g}",
            file=sys.stderr,
        )
        return 2
    half = a.half_width / 100
    if a.run is not None:
        run_dir = Path(a.reports_dir) / a.run
        p = plan_eval(
            half,
            run_dir=run_dir,
            benchmark=a.benchmark,
            checkpoint=a.checkpoint,
            problems=a.problems,
            tokens_per_s=a.tokens_per_s,
        )
    else:
        cfg = get_preset(a.preset)
        ov = _overrides(a.param)
        cfg = apply_overrides(cfg, ov) if ov else cfg
        p = plan_eval(
            half,
            cfg=cfg,
            accuracy=a.accuracy / 100,
            problems=a.problems,
            tokens_per_s=a.tokens_per_s,
        )
    print(format_eval_plan(p))
    return 0


def format_plan(table) -> str:
    """The planner's table with GB rounded, then one verdict line (and fixes) per stage."""
    shown = table.drop(columns=[c for c in ("suggestions",) if c in table.columns])
    gb = [c for c in shown.columns if c.endswith("_gb")]
    lines = [shown.round({c: 1 for c in gb}).to_string(index=False), ""]
    for _, row in table.iterrows():
        stage = row.get("stage", "?")
        if "fits" not in row:
            continue
        total = f"{row['total_gb']:.1f} GB" if "total_gb" in row else "estimate"
        if row["fits"]:
            lines.append(f"stage {stage}: fits ({total})")
            continue
        lines.append(f"stage {stage}: does NOT fit ({total}); to make it fit, change one of:")
        lines += [f"    - {s}" for s in (row.get("suggestions") or [])]
    return "\n".join(lines)


def _compare(run_ids: list[str], reports_dir: str, out: str | None) -> Path:

    out_dir = Path(out) if out else Path(reports_dir) / ("compare-" + "-".join(run_ids))
    path = build_compare_report([Path(reports_dir) / r for r in run_ids], out_dir)
    print(f"[polaris] compare report: {path}")
    return path


def cmd_report(a: argparse.Namespace) -> int:
    ids = [*a.run_ids, *(a.compare or [])]
    if a.compare and len(ids) < 2:
        print("polaris report --compare needs two or more run ids", file=sys.stderr)
        return 2
    if not a.compare and len(ids) != 1:
        print("polaris report: give one RUN_ID (or --compare RUN_A RUN_B ...)", file=sys.stderr)
        return 2
    missing = [r for r in ids if not (Path(a.reports_dir) / r).is_dir()]
    if missing:
        print(f"polaris report: no run folder {Path(a.reports_dir) / missing[0]}", file=sys.stderr)
        return 2
    if a.compare:
        _compare(ids, a.reports_dir, a.out)
        return 0

    path = build_report(Path(a.reports_dir) / ids[0], Path(a.out) if a.out else None)
    print(f"[polaris] report: {path}")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    if a.target == "model":
        return _export_model(a)
    if a.preset is None and a.run_dir is None:
        print("polaris export: give --preset NAME or --run-dir RUN", file=sys.stderr)
        return 2
    name = Path(a.run_dir).name if a.run_dir else a.preset
    out = Path(a.out or f"exports/{name}")
    try:
        paths = export_verl(
            a.preset, out, run_dir=a.run_dir, data_dir=a.data_dir, overrides=_overrides(a.param)
        )
    except DataUnavailableError as exc:  # offline without local data: one line, no traceback
        print(f"polaris export: {exc}", file=sys.stderr)
        return 2
    info = json.loads(Path(paths["manifest"]).read_text())
    print(f"[polaris] exported {info['preset']} for verl {info['verl_version']}: {out}")
    print(f"[polaris] stage 1: {info['stage1_rows']} problems, {info['stage1_source']}")
    print(f"[polaris] launch: bash {paths['script']}")
    return 0


def _export_model(a: argparse.Namespace) -> int:
    if a.run_dir is None:
        print("polaris export model: give --run-dir reports/<run>", file=sys.stderr)
        return 2
    out = Path(a.out or f"exports/{Path(a.run_dir).name}-model")
    try:
        export_model(a.run_dir, out, stage=a.stage, push_to_hub=a.push_to_hub)
    except ExportError as exc:
        print(f"polaris export model: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_presets(a: argparse.Namespace) -> int:
    """One block per preset: hardware, model, stages x steps, and its cost."""
    paper = scale_table().set_index("preset")
    for name in PRESETS:
        cfg = get_preset(name)
        steps = "+".join(str(st.max_steps) for st in cfg.stages)
        if name == "tiny":
            where = "CPU (no GPU)"
        else:
            nodes, gpus, gpu, _ = hardware(cfg)
            where = f"{nodes} x {gpus} {gpu}" if nodes * gpus > 1 else gpu
        print(f"{name}")
        print(f"    hardware: {where}; model: {cfg.model.name_or_path}")
        print(f"    stages: {len(cfg.stages)} ({steps} optimizer steps)")
        if name in paper.index:
            row = paper.loc[name]
            print(
                f"    cost: ~{row.gpu_hours:,.0f} GPU-hours (~{row.days:.0f} days on "
                f"{row.hardware}; estimate, {row.hardware_source})"
            )
        if cfg.notes:
            print(f"    notes: {cfg.notes}")
    print("\nmemory on your GPU: polaris plan --preset NAME --gpu-memory GiB")
    return 0


def cmd_config(a: argparse.Namespace) -> int:
    """The resolved config as JSON (what a run with these -p values would use)."""
    cfg = get_preset(a.preset)
    ov = _overrides(a.param)
    cfg = apply_overrides(cfg, ov) if ov else cfg
    print(json.dumps(cfg.to_dict(), indent=2, default=str))
    return 0


def cmd_kernel(a: argparse.Namespace) -> int:

    python = register_lab_kernel(a.name, user=a.user)
    print(f"[polaris] kernel {a.name!r} registered: {python}")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    handlers = {
        "run": cmd_run,
        "plan": cmd_plan,
        "plan-eval": cmd_plan_eval,
        "report": cmd_report,
        "export": cmd_export,
        "kernel": cmd_kernel,
        "presets": cmd_presets,
        "config": cmd_config,
    }
    try:
        return handlers[a.command](a)
    except (ConfigError, ValueError, FileNotFoundError, RunInUse, DataUnavailableError) as exc:
        print(f"polaris {a.command}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full disk, a folder without permission
        print(f"polaris {a.command}: {_one_line(_os_error(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n[polaris] interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    """An OSError as what happened and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    fix = {
        errno.ENOSPC: "free disk space (a run's superseded/ folders can go), then rerun",
        errno.EDQUOT: "free disk space or raise the quota, then rerun",
        errno.EROFS: "the file system is read-only: use a writable --reports-dir / --out",
        errno.EACCES: "no permission: use a folder you can write (--reports-dir / --out)",
        errno.EPERM: "no permission: use a folder you can write (--reports-dir / --out)",
    }.get(exc.errno, "fix the cause and rerun the same command: finished work is kept")
    return f"cannot write{where}: {exc.strerror or exc}; {fix}"


if __name__ == "__main__":
    sys.exit(main())
