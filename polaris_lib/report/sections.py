"""Sections of the run report: what each shows, in pipeline order (see runs.py for the data).

Each section is (anchor, heading, html). A section whose step has not run says so and the rest
of the report still builds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts, metrics, paper
from polaris_lib.report import figures, html
from polaris_lib.report.ablation import ablation_section
from polaris_lib.report.runs import (
    AUDIT_FILE,
    EXPECTED_ZERO,
    Run,
    dataset_sizes,
    difficulty,
    easy_drops,
    eval_headline,
    eval_paired,
    eval_protocol,
    eval_selection,
    evaluation,
    expected_zero,
    grader_audit,
    heldout,
    manifest_steps,
    paired_runs,
    probe_curves,
    probe_name,
    runs_protocols,
    stage_name,
    temperatures,
    training,
    verdict,
    yarn,
    yarn_expected_zero,
)


def _fig(fig, fig_id: str, save_dir: Path | None, caption: str = "") -> str:
    """Embed a report figure, and keep a copy in the 06_report folder when building a run."""
    png = html.png_of(fig)
    if save_dir is not None:
        artifacts.write_bytes(save_dir / f"fig_{fig_id}.png", png)
    return html.figure(png, fig_id, caption)


CAPTIONS = {
    "fig_probe": "accuracy (95% interval) and distinct-4 against temperature; zones shaded, "
    "chosen temperature marked; below, how often each temperature is chosen when the problems "
    "are resampled",
    "fig_truncation": "truncated fraction and mean response length against temperature",
    "fig_pass_rates": "how many of the n samples each pool problem solved",
    "fig_pass_rate_by_difficulty": "pass rate by difficulty",
    "fig_clip_entropy": "clipped-token fractions and token entropy per optimizer step",
    "fig_dataset_sizes": "training problems kept and dropped as easy, per stage",
    "fig_group_mix": "groups all-0 / mixed / all-1 before substitution, per optimizer step",
    "fig_heldout": "held-out accuracy before training (warm start) and after this stage",
    "fig_lengths": "mean response length and truncation rate per optimizer step",
    "fig_reward": "mean reward per optimizer step, and the pass rate before rescue",
    "fig_rewards": "reward per optimizer step",
    "fig_avg_vs_length": "avg@k against the response budget, with and without YaRN",
    "fig_length_buckets": "accuracy per response-length bucket, per rope variant",
    "fig_loss_by_position": "loss by token position, inside and beyond the trained length",
    "fig_accuracy_by_length": "accuracy by response length",
    "fig_avg_by_checkpoint": "avg@k per checkpoint with its 95% interval",
    "fig_length_hist": "response lengths per checkpoint",
    "fig_pass_at_k": "unbiased pass@k per checkpoint",
}
"""What a step's figure shows, by file name (the report shows this instead of the file path)."""


def _caption(step: str, stem: str) -> str:
    text = CAPTIONS.get(stem, stem.removeprefix("fig_").replace("_", " "))
    stage = re.search(r"_stage(\d+)$", step)
    return f"stage {stage.group(1)} · {text}" if stage else text


CONSTANT_CLIP = (
    "Clip fractions are not drawn: they are 0 at every step of this stage by construction. "
    "Each generation batch is used for exactly one optimizer step, so the new and old policies "
    "are the same when the ratio is taken (ratio 1) and the PPO clip never acts. Token entropy "
    "is in the stage's metrics."
)


def _constant_clip(run: Run, step: str) -> bool:
    """Whether every clip-ratio column of the stage's steps table is one constant."""
    t = run.table(step, "steps.parquet")
    cols = [] if t is None else [c for c in t.columns if c.startswith("clip_ratio/")]
    return bool(cols) and all(t[c].dropna().nunique() <= 1 for c in cols)


def _step_figs(run: Run, step: str, skip: tuple[str, ...] = (), extra: str = "") -> str:
    figs = [p for p in run.figures(step) if p.name not in skip]
    notes = ""
    if any(p.name == "fig_clip_entropy.png" for p in figs) and _constant_clip(run, step):
        figs = [p for p in figs if p.name != "fig_clip_entropy.png"]
        notes = html.note(CONSTANT_CLIP)
    return notes + "".join(
        html.figure(p, f"{step}/{p.stem}", _caption(step, p.stem) + extra) for p in figs
    )


def _grid(figs: str) -> str:
    """Figures side by side (two per row on a wide screen)."""
    return f'<div class="figs">{figs}</div>' if figs else ""


def _status(run: Run, step: str) -> str:
    rec = next((s for s in run.manifest.get("steps", []) if s.get("step") == step), {})
    if (run.dir / step).is_dir() and not run.done(step):
        return f"incomplete ({rec.get('status', 'no completion marker')})"
    return rec.get("status") if rec.get("status") not in (None, "pending", "done") else "not run"


def _ci(lo, hi) -> str:
    return f"[{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""


SKIPPED = "not evaluated: a harness check on the toy model whose data is not on this machine"


def _skipped_benchmarks(run: Run) -> list[str]:
    """Benchmarks 05 skipped (recorded as eval/<benchmark>/skipped in its metrics.json)."""
    m = run.metrics(artifacts.EVALUATION)
    return [k.split("/")[1] for k in m if k.startswith("eval/") and k.endswith("/skipped")]


def _summary(run: Run, save: Path | None) -> str:
    """The card at the top: verdict, held-out gain, eval avg@k, temperatures, data sizes."""
    top, blocks = [], []
    h = heldout(run)
    if h:
        top.append(
            (
                "Held-out gain",
                f'<p class="big">{h["gain"]:+.3f} <span class="ci">{_ci(h["lo"], h["hi"])}</span>'
                f"</p><p>accuracy {h['before']:.3f} → {h['after']:.3f} after stage {h['stage']}"
                f" · {h['problems']} held-out problems × {h['k']} samples at T "
                f"{h['temperature']} · 95% bootstrap interval of the paired gain</p>",
            )
        )
    ev, proto = eval_headline(run)
    if not ev.empty:
        rows = "".join(
            f"<tr><th>{html.esc(r.benchmark)}</th><td>avg@{r.k}</td>"
            f"<td>{'' if pd.isna(r.first) else f'{r.first:.3f} → '}<b>{r.last:.3f}</b></td>"
            f'<td class="ci">{_ci(r.ci_lo, r.ci_hi)}'
            f"{'' if r.rule == 'bootstrap' else ' Wilson'}</td>"
            f'<td class="ci">{"" if pd.isna(r.fixed_lo) else "fixed " + _ci(r.fixed_lo, r.fixed_hi)}'
            "</td>"
            f'<td class="expect">{"≈ 0 expected on the toy (harness check)" if r.note else ""}'
            "</td></tr>"
            for r in ev.itertuples()
        )
        blocks.append(
            (
                f"Evaluation · final checkpoint {html.esc(ev.attrs['last'])}",
                f'<table class="card-tbl">{rows}</table><p class="proto">{html.esc(proto)}</p>',
            )
        )
    skipped = _skipped_benchmarks(run)
    if skipped:
        note = f'<p class="expect">{html.esc(", ".join(skipped))}: {html.esc(SKIPPED)}</p>'
        if blocks:
            title, body = blocks[-1]
            blocks[-1] = (title, body + note)
        else:
            blocks.append(("Evaluation", note))
    sizes = dataset_sizes(run)
    if sizes:
        chain = " → ".join(f"<b>{n}</b>" for _, n in sizes)
        labels = " → ".join(label for label, _ in sizes)
        top.append(("Training problems", f'<p class="big">{chain}</p><p>{html.esc(labels)}</p>'))
    temps = temperatures([run])
    if not temps.empty:
        line = "<br>".join(
            f"stage {r.stage}: <b>T {r.temperature:g}</b> ({html.esc(r.method)})"
            for r in temps.itertuples()
        )
        top.append(("Temperatures (01 probe)", f"<p>{line}</p>"))
    blocks = top + blocks
    yz = yarn_expected_zero(run) if run.done(artifacts.EXTRAPOLATION) else ""
    if yz:
        blocks.append(("Length extrapolation", f'<p class="expect">YaRN: {html.esc(yz)}</p>'))
    cells = "".join(
        f'<div class="cell{" wide" if t.startswith(("Eval", "Length")) else ""}"><h4>{t}</h4>'
        f"{b}</div>"
        for t, b in blocks
    )
    return (
        f'<div class="card"><p class="verdict">{html.esc(verdict(run))}</p>'
        f'<div class="cells">{cells}</div></div>'
    )


def _probe(run: Run, save: Path | None) -> str:
    temps = temperatures([run])
    body = [
        html.note(
            "The training temperature of each stage: stage 1 at the start of the "
            "controlled-exploration zone, later stages matching the previous stage's "
            "distinct-4 (RECIPE §1)."
        )
    ]
    if not temps.empty:
        body.append(html.table(temps.drop(columns="run")))
        rule = run.metrics(probe_name(1)).get("probe/rule")
        if rule:
            body.append(html.details("the rule, as recorded", f"<pre>{html.esc(rule)}</pre>"))
    curves = probe_curves([run])
    if not curves.empty:
        body.append(
            _fig(
                figures.probe_overlay(curves, temps, run.caption()),
                "probe_overlay",
                save,
                "every stage's probe on one plot: accuracy and distinct-4 against temperature, "
                "one colour per stage, the chosen temperature dotted",
            )
        )
    figs, missing = [], []
    for k in range(1, run.n_stages + 1):
        step = probe_name(k)
        if run.done(step):
            figs.append(_step_figs(run, step))
        else:
            missing.append(html.not_run(step, _status(run, step)))
    body += missing
    if figs:
        body.append(html.details("each stage's probe figures (zones)", _grid("".join(figs))))
    return "".join(body)


def _curate(run: Run, save: Path | None) -> str:
    if not run.done(artifacts.CURATE):
        return html.not_run(artifacts.CURATE, _status(run, artifacts.CURATE))
    m = run.metrics(artifacts.CURATE)
    keys = (
        "curate/pool_size",
        "curate/kept",
        "curate/dropped_solved_all",
        "curate/solved_none",
        "curate/mean_pass_rate",
        "curate/temperature",
    )
    body = [html.kv_table({k: m[k] for k in keys if k in m})]
    hist = difficulty([run])
    if not hist.empty:
        body.append(
            _fig(
                figures.difficulty_before_after(hist, run.caption()),
                "difficulty",
                save,
                "pass-rate histogram of the pool before curation and of the training "
                "set after (problems solved n/n dropped)",
            )
        )
    return "".join(body) + _grid(_step_figs(run, artifacts.CURATE))


def _train(run: Run, save: Path | None) -> str:
    steps, bounds = training([run])
    body = []
    if steps.empty:
        body.append(html.not_run("training curves", "no stage has written steps.parquet yet"))
    else:
        body.append(
            _fig(
                figures.training_timeline(steps, bounds, run.caption()),
                "training",
                save,
                "all stages on one step axis; shading and dashed lines mark stages",
            )
        )
    drops = easy_drops([run])
    if not drops.empty:
        body.append(
            _fig(
                figures.easy_drop(drops, run.caption()),
                "easy_drop",
                save,
                "problems dropped as easy (stage mean reward above the threshold)",
            )
        )
        body.append(html.table(drops.drop(columns="run")))
    for k in range(1, run.n_stages + 1):
        step = stage_name(k)
        if not run.done(step):
            body.append(html.not_run(step, _status(run, step)))
            continue
        m = {k2: v for k2, v in run.metrics(step).items() if k2.startswith("train/")}
        body.append(f"<h3>Stage {k}</h3>" + html.details("metrics", html.kv_table(m)))
        body.append(_grid(_step_figs(run, step)))
    return "".join(body)


def _yarn(run: Run, save: Path | None) -> str:
    if not run.done(artifacts.EXTRAPOLATION):
        return html.not_run(artifacts.EXTRAPOLATION, _status(run, artifacts.EXTRAPOLATION))
    m = run.metrics(artifacts.EXTRAPOLATION)
    body = [
        html.note(
            "avg@k with its 95% interval per response budget, with and without YaRN "
            f"(trained length {m.get('yarn/trained_length', '?')} tokens)."
        )
    ]
    if yarn_expected_zero(run):
        body.append(f'<p class="expect">{html.esc(yarn_expected_zero(run))}</p>')
    avg = metrics.binomial_rule(yarn([run]))
    if not avg.empty:
        cell = avg.apply(lambda r: f"{r['avg']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]", axis=1)
        wide = avg.assign(cell=cell).pivot(index="variant", columns="max_length", values="cell")
        body.append(html.table(wide.reset_index().rename(columns=str)))
    body.append(html.details("all yarn/ metrics", html.kv_table(m)))
    return "".join(body) + _grid(_step_figs(run, artifacts.EXTRAPOLATION))


def _eval(run: Run, save: Path | None) -> str:
    if not run.done(artifacts.EVALUATION):
        return html.not_run(artifacts.EVALUATION, _status(run, artifacts.EVALUATION))

    summary, curve = evaluation([run])
    summary = metrics.binomial_rule(summary)
    body = []
    if skipped := _skipped_benchmarks(run):
        body.append(f'<p class="expect">{html.esc(", ".join(skipped))}: {html.esc(SKIPPED)}.</p>')
    zero = [b for b in dict.fromkeys(summary.get("benchmark", [])) if expected_zero(run, b)]
    if zero:
        body.append(
            f'<p class="expect">{html.esc(", ".join(zero))}: {html.esc(EXPECTED_ZERO)}.</p>'
        )
    if selected := eval_selection(run):
        body.append(f'<p class="proto"><b>{html.esc(selected)}</b></p>')
    proto = eval_protocol(run)
    if not summary.empty:
        body.append(_eval_table(summary, proto))
        body.append(_paired(run))
        body.append(_audit(run))
        model = run.config().get("model", {}).get("name_or_path", "")
        comparison = paper.paper_comparison(summary, model, proto, skipped)
        if comparison.empty:
            ref = paper.paper_reference()
            body.append(
                html.note(
                    f"The paper reports no numbers for {model or 'this model'}; for "
                    f"reference, its avg@k (%, RECIPE §7; {ref.attrs['protocol']}):"
                )
                + html.table(ref, "{:.1f}")
            )
        else:
            body.append(
                "<h3>Beside the paper</h3>"
                + html.note(comparison.attrs["interval"])
                + html.table(comparison, "{:.1f}")
            )
    shown: tuple[str, ...] = ()
    if not curve.empty:  # the report's own pass@k replaces the step's copy of the same curves
        body.append(
            _fig(
                figures.pass_at_k_overlay(curve, run.caption()),
                "pass_at_k",
                save,
                "unbiased pass@k per checkpoint" + _protocol_caption(proto),
            )
        )
        shown = ("fig_pass_at_k.png",)
    figs = _step_figs(run, artifacts.EVALUATION, skip=shown, extra=_protocol_caption(proto))
    return "".join(body) + _grid(figs)


EVAL_COLUMNS = {
    "checkpoint": "checkpoint",
    "benchmark": "benchmark",
    "k": "k",
    "avg": "avg@k",
    "sampling_lo": "problems fixed: lo",
    "sampling_hi": "problems fixed: hi",
    "ci_lo": "over problems: lo",
    "ci_hi": "over problems: hi",
    "ci_rule": "over-problems rule",
    "pass_at_k": "pass@k",
    "truncation_rate": "truncation_rate",
    "mean_len": "mean_len",
    "protocol": "protocol",
}
"""The evaluation table's columns (summary name -> heading), in order."""


def _eval_table(summary: pd.DataFrame, proto: pd.DataFrame) -> str:
    """avg@k with both intervals and the protocol mark of every row, then the marks' legend."""
    marks = {(r.checkpoint, r.benchmark): r.protocol for r in proto.itertuples()}
    t = summary.assign(
        protocol=[
            marks.get(key, "?") for key in zip(summary.checkpoint, summary.benchmark, strict=True)
        ]
    )
    t = t[[c for c in EVAL_COLUMNS if c in t]].rename(columns=EVAL_COLUMNS)
    return (
        html.note(
            f"Two 95% intervals per number. Problems fixed: {metrics.SAMPLING_METHOD}. Over "
            f"problems: {summary.attrs.get('interval', metrics.INTERVAL_METHOD)}."
        )
        + html.table(t)
        + _legend(proto.attrs.get("legend", {}))
    )


def _legend(legend: dict) -> str:
    lines = "<br>".join(f"<b>{html.esc(k)}</b>: {html.esc(v)}" for k, v in sorted(legend.items()))
    return f'<p class="proto">protocols — {lines}</p>' if lines else ""


def _protocol_caption(proto: pd.DataFrame) -> str:
    legend = proto.attrs.get("legend", {}) if not proto.empty else {}
    return "".join(f" · protocol {k}: {v}" for k, v in sorted(legend.items()))


def _paired(run: Run) -> str:
    paired = eval_paired(run)
    if paired.empty:
        return ""
    ref = paired["a"].iloc[0]
    return (
        f"<h3>Paired: each checkpoint against {html.esc(ref)}</h3>"
        + html.note(paired.attrs.get("method", metrics.PAIRED_METHOD))
        + html.table(paired, "{:.3f}")
    )


def _audit(run: Run) -> str:
    agree, rows = grader_audit(run)
    if agree.empty:
        return html.note("grader audit: not recorded for this run (made before the audit)")
    rel = f"{artifacts.EVALUATION}/{AUDIT_FILE}"
    link = f'<a href="{html.esc(rel)}">{html.esc(rel)}</a>'
    n = 0 if rows is None else len(rows)
    shown = (
        html.details(
            f"the first {min(n, 20)} of {n} disagreements",
            html.table(rows.head(20).astype({"answers": str})),
        )
        if n
        else ""
    )
    return (
        "<h3>Grader audit: a second, independent rule</h3>"
        + html.note(
            "Every response graded again with the authors' evaluation rule (the last \\boxed{} "
            "anywhere, no </think> required; math-verify, same time bound). The training reward "
            "stays the kit's rule. kit_only / authors_only: responses only that rule credits."
        )
        + html.table(agree)
        + f'<p class="proto">{n} disagreements (problem, answers, both verdicts): {link}</p>'
        + shown
    )


def _paired_runs(runs: list[Run]) -> str:
    """Run B minus run A per checkpoint and benchmark on shared problems, protocols marked."""
    pr = paired_runs(runs)
    protos = runs_protocols(runs)
    if pr.empty:
        return html.not_run("paired comparison", "no two runs evaluated the same problems")
    pr = pr.assign(mark=["" if same else "≠ protocols differ" for same in pr["same_protocol"]])
    cols = [c for c in pr.columns if c != "same_protocol"]
    table = protos[["run", "checkpoint", "benchmark", "protocol", "truncation_rate"]]
    return (
        html.note(
            metrics.PAIRED_METHOD + ". protocol_a / protocol_b: each side's protocol mark "
            "(legend below); a row whose two protocols differ is marked ≠ and is not a clean "
            "comparison of the runs."
        )
        + html.table(pr[cols])
        + _legend(protos.attrs.get("legend", {}))
        + html.details("every run's protocol mark per checkpoint and benchmark", html.table(table))
    )


def _manifest(run: Run, save: Path | None) -> str:
    m = run.manifest
    if not m:
        return html.not_run(
            "manifest.json", "this folder has no manifest (not made by polaris run)"
        )
    steps = manifest_steps(run)
    dev = m.get("device", {})
    env = {
        "preset / seed": f"{m.get('preset')} / {m.get('seed')}",
        "overrides": m.get("overrides") or "none",
        "git": f"{(m.get('git') or {}).get('commit')} (dirty: {(m.get('git') or {}).get('dirty')})",
        "device": f"{dev.get('kind')} {dev.get('name', '')}, {dev.get('memory_gb')} GB",
        "cpu / RAM": f"{dev.get('cpu_count')} cores, {dev.get('ram_gb')} GB",
        "host": m.get("host"),
        "python": (m.get("python") or {}).get("version"),
        "total step time": f"{steps['elapsed_s'].fillna(0).sum() / 60:.1f} min",
        "peak kernel RSS": f"{steps['peak_rss_gb'].fillna(0).max():.2f} GB",
    }
    pk = ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items())
    return html.kv_table(env) + html.table(steps, "{:.2f}") + html.note(f"packages: {pk}")


def _ablation(run: Run, save: Path | None) -> str:
    """The kit's shipped per-component ablation (not this run's): when each trick paid on the toy."""
    return ablation_section(save)


SINGLE = [
    ("summary", "Summary", _summary),
    ("probe", "1. Temperature probe", _probe),
    ("curate", "2. Difficulty curation", _curate),
    ("train", "3. GRPO stages", _train),
    ("yarn", "4. Length extrapolation (YaRN)", _yarn),
    ("eval", "5. Evaluation", _eval),
    ("manifest", "6. What ran, where, how long", _manifest),
    ("ablation", "7. What each component does on the toy (benchmarks/ablation.py)", _ablation),
]


def single_run_sections(run: Run, save_dir: Path | None) -> list[tuple[str, str, str]]:
    return [(a, h, fn(run, save_dir)) for a, h, fn in SINGLE]


def compare_sections(runs: list[Run]) -> list[tuple[str, str, str]]:
    """The same views with the runs overlaid (one colour per run)."""
    cap = " vs ".join(r.caption() for r in runs)
    out = []

    def add(anchor, heading, table, make, fig_id, note=""):
        body = (
            html.not_run(heading, "no run has this step")
            if table.empty
            else html.figure(html.png_of(make(table)), fig_id, note)
        )
        out.append((anchor, heading, body))

    temps = temperatures(runs)
    probe_tab = html.table(temps) if not temps.empty else ""
    curves = probe_curves(runs)
    add(
        "probe",
        "1. Temperature probe",
        curves,
        lambda t: figures.probe_overlay(t, temps, cap),
        "probe_overlay",
    )
    out[-1] = (out[-1][0], out[-1][1], probe_tab + out[-1][2])
    add(
        "curate",
        "2. Difficulty curation",
        difficulty(runs),
        lambda t: figures.difficulty_before_after(t, cap),
        "difficulty",
    )
    steps, bounds = training(runs)
    add(
        "train",
        "3. GRPO stages",
        steps,
        lambda t: figures.training_timeline(t, bounds, cap),
        "training",
    )
    drops = easy_drops(runs)
    if not drops.empty:
        out.append(
            (
                "drop",
                "3b. Easy-drop per stage",
                html.figure(html.png_of(figures.easy_drop(drops, cap)), "easy_drop")
                + html.table(drops),
            )
        )
    add(
        "yarn",
        "4. Length extrapolation (YaRN)",
        yarn(runs),
        lambda t: figures.yarn_overlay(t, cap),
        "yarn",
    )
    summary, curve = evaluation(runs)
    protos = runs_protocols(runs)
    legend = protos.attrs.get("legend", {}) if not protos.empty else {}
    add(
        "eval",
        "5. Evaluation",
        summary,
        lambda t: figures.eval_overlay(t, cap),
        "eval",
        " · ".join(f"protocol {k}: {v}" for k, v in sorted(legend.items()))
        + (
            " · runs: "
            + "; ".join(
                f"{r} {''.join(sorted(set(g['protocol'])))}" for r, g in protos.groupby("run")
            )
            if not protos.empty
            else ""
        ),
    )
    add("passk", "5b. pass@k", curve, lambda t: figures.pass_at_k_overlay(t, cap), "pass_at_k")
    out.append(("paired", "5c. Paired: each run against the first", _paired_runs(runs)))
    rows = [
        dict(
            run=r.name,
            preset=r.manifest.get("preset"),
            seed=r.manifest.get("seed"),
            status=r.manifest.get("status"),
            commit=(r.manifest.get("git") or {}).get("commit"),
            minutes=manifest_steps(r)["elapsed_s"].fillna(0).sum() / 60,
        )
        for r in runs
    ]
    out.append(("manifest", "6. The runs", html.table(pd.DataFrame(rows), "{:.1f}")))
    return out
