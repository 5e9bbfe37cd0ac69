"""The run report's data (06): run folders read lazily, and tidy tables assembled across steps.

Every number comes from a step folder's metrics.json or tidy tables (the run folder is the only
interface between steps); polaris_lib/report/sections.py turns these tables into sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts, metrics, paper
from polaris_lib.grading import kit_rule_name

# Training metrics plotted on the timeline: label -> column candidates in steps.parquet (TRL log
# keys first; the first present one is used).
TRAIN_METRICS = {
    "reward (mean)": ("reward", "train/reward", "rewards/mean"),
    "response length (tokens)": ("completions/mean_length", "completion_length", "mean_length"),
    "truncated fraction": ("completions/clipped_ratio", "truncation_rate"),
    "mixed groups (fraction)": ("polaris/frac_mixed", "frac_mixed"),
}


@dataclass
class Run:
    """One run folder, read lazily: manifest, step folders, their metrics and tables."""

    dir: Path
    manifest: dict = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        man = run_dir / "manifest.json"
        return cls(run_dir, artifacts.read_json(man) if man.exists() else {})

    @property
    def name(self) -> str:
        return self.manifest.get("run_id") or self.dir.name

    @property
    def n_stages(self) -> int:
        stages = {s.get("stage") for s in self.manifest.get("steps", []) if s.get("stage")}
        found = [
            int(m.group(1))
            for p in self.dir.glob(f"{artifacts.GRPO_STAGE}_stage*")
            if (m := re.search(r"stage(\d+)$", p.name))
        ]
        return max([*stages, *found, 0])

    def done(self, step: str) -> bool:
        return artifacts.step_done(self.dir / step)

    def metrics(self, step: str) -> dict:
        path = self.dir / step / "metrics.json"
        return artifacts.read_json(path) if path.exists() else {}

    def table(self, step: str, name: str) -> pd.DataFrame | None:
        path = self.dir / step / name
        return pd.read_parquet(path) if path.exists() else None

    def figures(self, step: str) -> list[Path]:
        return sorted((self.dir / step).glob("fig_*.png"))

    def caption(self) -> str:
        model = self.config().get("model", {}).get("name_or_path", "?")
        return (
            f"run {self.name} · preset {self.manifest.get('preset', '?')} · model {model} "
            f"· seed {self.manifest.get('seed', '?')}"
        )

    def config(self) -> dict:
        for p in sorted(self.dir.glob("*/config.json")):
            return artifacts.read_json(p)
        return {}


def probe_name(k: int) -> str:
    return f"{artifacts.PROBE}_stage{k}"


def stage_name(k: int) -> str:
    return f"{artifacts.GRPO_STAGE}_stage{k}"


# --- tidy tables assembled across steps (and runs) -------------------------------------------


def temperatures(runs: list[Run]) -> pd.DataFrame:
    """Chosen temperature per run and stage, how it was chosen, and distinct-4 there."""
    rows = []
    for r in runs:
        for k in range(1, r.n_stages + 1):
            m = r.metrics(probe_name(k))
            if "probe/chosen_temperature" in m and r.done(probe_name(k)):
                rows.append(
                    dict(
                        run=r.name,
                        stage=k,
                        temperature=m["probe/chosen_temperature"],
                        method=m.get("probe/method", ""),
                        overridden=m.get("probe/overridden", False),
                        distinct4=m.get("probe/distinct4_at_chosen"),
                        accuracy=m.get("probe/accuracy_at_chosen"),
                    )
                )
    return pd.DataFrame(rows)


def probe_curves(runs: list[Run]) -> pd.DataFrame:
    frames = []
    for r in runs:
        for k in range(1, r.n_stages + 1):
            t = r.table(probe_name(k), "per_temperature.parquet")
            if t is not None and r.done(probe_name(k)):
                frames.append(
                    t[["temperature", "accuracy", "distinct4"]].assign(run=r.name, stage=k)
                )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def difficulty(runs: list[Run]) -> pd.DataFrame:
    """Problems per pass-rate bucket before (pool) and after (curated training set) curation."""
    rows = []
    for r in runs:
        rates, kept = (
            r.table(artifacts.CURATE, "pass_rates.parquet"),
            r.table(artifacts.CURATE, "curated.parquet"),
        )
        if rates is None or not r.done(artifacts.CURATE):
            continue
        n = int(rates["n"].max())
        after = (kept["pass_rate"] * n).round().astype(int) if kept is not None else pd.Series()
        for name, ks in (("before: pool", rates["k"].astype(int)), ("after: curated", after)):
            counts = ks.value_counts().reindex(range(n + 1), fill_value=0)
            rows += [
                dict(run=r.name, set=name, k=k, bucket=f"{k}/{n}", problems=int(c))
                for k, c in counts.items()
            ]
    return pd.DataFrame(rows)


def training(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps: run, stage, global_step, metric, value) and (boundaries: run, stage, start, end)."""
    steps, bounds = [], []
    for r in runs:
        offset = 0
        for k in range(1, r.n_stages + 1):
            t = r.table(stage_name(k), "steps.parquet")
            if t is None or t.empty:
                continue
            step = (
                t["step"] if "step" in t else t.get("global_step", pd.Series(range(1, len(t) + 1)))
            )
            g = offset + step.astype(float).to_numpy()
            bounds.append(dict(run=r.name, stage=k, start=offset, end=float(g.max())))
            for label, cands in TRAIN_METRICS.items():
                col = next((c for c in cands if c in t.columns), None)
                if col is not None:
                    steps.append(
                        pd.DataFrame(
                            dict(
                                run=r.name,
                                stage=k,
                                global_step=g,
                                metric=label,
                                value=t[col].astype(float),
                            )
                        )
                    )
            offset = float(g.max())
    s = pd.concat(steps, ignore_index=True).dropna(subset=["value"]) if steps else pd.DataFrame()
    return s, pd.DataFrame(bounds)


def easy_drops(runs: list[Run]) -> pd.DataFrame:
    """Problems kept for the next stage and dropped as easy (> threshold) per stage."""
    rows = []
    for r in runs:
        for k in range(1, r.n_stages + 1):
            nxt = r.table(stage_name(k), "next_stage_data.parquet")
            drop = r.table(stage_name(k), "easy_dropped.parquet")
            if nxt is not None and r.done(stage_name(k)):
                rows.append(
                    dict(
                        run=r.name, stage=k, kept=len(nxt), dropped=0 if drop is None else len(drop)
                    )
                )
    return pd.DataFrame(rows)


def evaluation(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: run, checkpoint, benchmark, k, avg, ci_lo, ci_hi, ...) and the pass@k curves."""

    sums, curves = [], []
    for r in runs:
        if not r.done(artifacts.EVALUATION):
            continue
        s, resp = (
            r.table(artifacts.EVALUATION, "summary.parquet"),
            r.table(artifacts.EVALUATION, "responses.parquet"),
        )
        if resp is not None and (s is None or "sampling_lo" not in s):
            s = metrics.summarize(resp)  # older runs: the problems-fixed interval added here
        c = r.table(artifacts.EVALUATION, "pass_at_k.parquet")
        if c is None and resp is not None:
            c = metrics.pass_at_k_curve(resp)
        if s is not None:
            sums.append(s.assign(run=r.name))
        if c is not None:
            curves.append(c.assign(run=r.name))
    return _concat(sums), _concat(curves)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def yarn(runs: list[Run]) -> pd.DataFrame:
    frames = [
        r.table(artifacts.EXTRAPOLATION, "avg_vs_length.parquet").assign(run=r.name)
        for r in runs
        if r.done(artifacts.EXTRAPOLATION)
        and r.table(artifacts.EXTRAPOLATION, "avg_vs_length.parquet") is not None
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def manifest_steps(run: Run) -> pd.DataFrame:
    """What ran, when and how long, from the manifest (empty when the run has none)."""
    cols = ["step", "status", "started", "ended", "elapsed_s", "retries", "peak_rss_gb"]
    rows = [{c: s.get(c) for c in cols} for s in run.manifest.get("steps", [])]
    if run_status(run) == "done":  # built by 06 itself, after every other step finished
        for r in rows:
            if r["step"] == artifacts.REPORT and r["status"] == "running":
                r["status"] = "done (this report)"
    return pd.DataFrame(rows, columns=cols)


def paper_table(run: Run) -> pd.DataFrame:
    """The run's avg@k (percent, with interval) beside the paper's, when the model is one of theirs."""

    summary, _ = evaluation([run])
    if summary.empty:
        return pd.DataFrame(columns=paper.COMPARISON_COLUMNS)
    model = run.config().get("model", {}).get("name_or_path", "")
    return paper.paper_comparison(
        summary.drop(columns="run"), model, eval_protocol(run), skipped_benchmarks(run)
    )


def skipped_benchmarks(run: Run) -> list[str]:
    """Benchmarks 05 skipped (recorded as eval/<benchmark>/skipped in its metrics.json)."""
    m = run.metrics(artifacts.EVALUATION)
    return [k.split("/")[1] for k in m if k.startswith("eval/") and k.endswith("/skipped")]


def eval_table(run: Run) -> pd.DataFrame:
    """Beside the paper when it reports this model; else the run's own avg@k with intervals."""
    paper = paper_table(run)
    if not paper.empty:
        return paper
    summary, _ = evaluation([run])
    cols = [c for c in ("checkpoint", "benchmark", "k", "avg", "ci_lo", "ci_hi") if c in summary]
    return summary[cols].rename(columns={"avg": "avg@k"})


# --- the summary card: the run's headline numbers, each from one step's files ------------------


def step_config(run: Run, step: str) -> dict:
    """The resolved config a step ran with (its config.json), or {}."""
    path = run.dir / step / "config.json"
    return artifacts.read_json(path) if path.exists() else {}


def run_status(run: Run) -> str:
    """The run's status as a reader should see it.

    Step 06 builds the report while the manifest still says "running" (the runner marks the run
    done after 06 returns), so a report built by 06 after every other step finished is done.
    """
    m = run.manifest
    status = m.get("status", "unknown")
    if status != "running":
        return status
    others = [s for s in m.get("steps", []) if s.get("step") != artifacts.REPORT]
    if others and all(s.get("status") in ("done", "skipped") for s in others):
        return "done"
    return "running"


def dataset_sizes(run: Run) -> list[tuple[str, int]]:
    """Training problems through the run: pool, curated, then each stage's kept set."""
    out = []
    cur = run.metrics(artifacts.CURATE)
    if "curate/pool_size" in cur:
        out.append(("pool", int(cur["curate/pool_size"])))
    if "curate/kept" in cur:
        out.append(("curated", int(cur["curate/kept"])))
    for k in range(1, run.n_stages + 1):
        m = run.metrics(stage_name(k))
        n = m.get("train/next_stage_size")
        if n is None and run.done(stage_name(k)):
            t = run.table(stage_name(k), "next_stage_data.parquet")
            n = None if t is None else len(t)
        if n is not None:
            out.append((f"kept after stage {k}", int(n)))
    return out


def heldout(run: Run) -> dict:
    """Held-out accuracy before training and after the last finished stage, and the gain with its
    interval (train/heldout_* of that stage's metrics.json); {} when no stage measured it."""
    for k in range(run.n_stages, 0, -1):
        m = run.metrics(stage_name(k))
        if run.done(stage_name(k)) and "train/heldout_gain" in m:
            return dict(
                stage=k,
                before=m.get("train/heldout_acc_warmstart"),
                after=m.get("train/heldout_acc"),
                gain=m["train/heldout_gain"],
                lo=m.get("train/heldout_gain_lo"),
                hi=m.get("train/heldout_gain_hi"),
                problems=m.get("train/heldout_problems"),
                k=m.get("train/heldout_k"),
                temperature=m.get("train/heldout_temperature"),
            )
    return {}


def toy_model(run: Run) -> bool:
    return run.config().get("model", {}).get("name_or_path") == "toy"


EXPECTED_ZERO = (
    "expected ≈ 0 on the toy: the toy model only learns sums of small numbers; this benchmark "
    "checks that the evaluation harness runs end to end"
)


def expected_zero(run: Run, benchmark: str) -> str:
    """Why a benchmark's result is expected to be about zero on this run, or ''."""
    harness = run.metrics(artifacts.EVALUATION).get(f"eval/{benchmark}/harness_only")
    return EXPECTED_ZERO if harness or (toy_model(run) and benchmark != "toy") else ""


def yarn_expected_zero(run: Run) -> str:
    """Why the YaRN variants are expected to be about zero (the toy's short context), or ''."""
    if not toy_model(run):
        return ""
    cfg = step_config(run, artifacts.EXTRAPOLATION) or run.config()
    positions = cfg.get("toy", {}).get("max_position_embeddings", "?")
    factor = cfg.get("yarn", {}).get("factor", "?")
    return (
        f"expected ≈ 0 on the toy: a {positions}-position toy model does not survive rotary "
        f"positions rescaled by YaRN (factor {factor}) or linear scaling; on the toy this step "
        "checks the mechanics (rope config, lengths, loss by position), not a gain"
    )


def eval_headline(run: Run) -> tuple[pd.DataFrame, str]:
    """(benchmark, k, base avg, final avg, interval, note) for the first and last checkpoint,
    and the protocol line (samples, temperature, length budget, interval rule)."""
    summary, _ = evaluation([run])
    if summary.empty:
        return pd.DataFrame(), ""
    summary = metrics.binomial_rule(summary)
    cks = list(dict.fromkeys(summary["checkpoint"]))
    first, last = cks[0], cks[-1]
    rows = []
    for b, g in summary.groupby("benchmark", sort=False):
        g = g.set_index("checkpoint")
        if last not in g.index:
            continue
        r = g.loc[last]
        rows.append(
            dict(
                benchmark=b,
                k=int(r["k"]),
                problems=int(r["problems"]) if "problems" in g else None,
                first=float(g.loc[first, "avg"]) if first in g.index and first != last else None,
                last=float(r["avg"]),
                ci_lo=float(r["ci_lo"]),
                ci_hi=float(r["ci_hi"]),
                fixed_lo=float(r["sampling_lo"]) if "sampling_lo" in g else None,
                fixed_hi=float(r["sampling_hi"]) if "sampling_hi" in g else None,
                rule=r.get("ci_rule", "bootstrap"),
                note=expected_zero(run, b),
            )
        )
    e = step_config(run, artifacts.EVALUATION).get("eval", {})
    samples = ", ".join(
        f"{r['benchmark']} avg@{r['k']} over {r['problems']} problems" for r in rows
    )
    proto = (
        f"{first} → {last}; {samples}; T {e.get('temperature', '?')}, top_p {e.get('top_p', '?')}, "
        f"top_k {e.get('top_k', '?') or 'off'}, ≤ {e.get('max_new_tokens', '?')} new tokens; "
        "95% intervals: over problems (bootstrap; Wilson where every problem scored 0 or 1), "
        "then with the problems held fixed (sampling noise only)"
    )
    out = pd.DataFrame(rows)
    out.attrs.update(first=first, last=last)
    return out, proto


def verdict(run: Run) -> str:
    """One line: did training help on held-out problems, and did the run finish."""
    h = heldout(run)
    status = run_status(run)
    unfinished = "" if status == "done" else f"; the run is not finished (status {status})"
    if not h:
        return f"No held-out measurement yet{unfinished}."
    gain, lo, hi = h["gain"], h.get("lo"), h.get("hi")
    span = f"{h['before']:.3f} → {h['after']:.3f}" if h.get("before") is not None else ""
    ci = f" ({gain:+.3f}, 95% interval [{lo:.3f}, {hi:.3f}])" if lo is not None else ""
    if lo is not None and lo > 0:
        word = "Training helped"
    elif hi is not None and hi < 0:
        word = "Training hurt"
    else:
        word = "No measurable change from training"
    return f"{word}: held-out accuracy {span}{ci} after {h['stage']} stage(s){unfinished}."


# --- issue 15: protocols, paired comparisons, the grader audit, the reported checkpoint -------
AUDIT_FILE = "grader_disagreements.parquet"
"""The disagreement table of 05's grader audit (linked from the report)."""


def eval_protocol(run: Run) -> pd.DataFrame:
    """The run's protocol table (05's protocol.parquet); for a run made before the stamp, the same
    fields rebuilt from its config and summary (context: the longest response only)."""
    t = run.table(artifacts.EVALUATION, "protocol.parquet")
    if t is not None:
        return metrics.mark_protocols(t.drop(columns="protocol", errors="ignore"))
    summary, _ = evaluation([run])
    if summary.empty:
        return pd.DataFrame()
    cfg = step_config(run, artifacts.EVALUATION) or run.config()
    e = cfg.get("eval", {})
    thinking = cfg.get("model", {}).get("thinking", True)
    rows = [
        dict(
            checkpoint=r["checkpoint"],
            benchmark=r["benchmark"],
            temperature=float(e.get("temperature", float("nan"))),
            top_p=float(e.get("top_p", float("nan"))),
            top_k=int(e.get("top_k", 0)),
            max_new_tokens=int(e.get("max_new_tokens", 0)),
            yarn=False,  # the kit has always evaluated at the model's own positions
            yarn_factor=float("nan"),
            k=int(r["k"]),
            grader=kit_rule_name(thinking),
            context_used=int(r.get("max_len", 0)),
            context_note="response only (recorded before the protocol stamp)",
            truncation_rate=float(r.get("truncation_rate", float("nan"))),
        )
        for r in summary.to_dict("records")
    ]
    return metrics.mark_protocols(pd.DataFrame(rows))


def runs_protocols(runs: list[Run]) -> pd.DataFrame:
    """Every run's protocol rows (with `run`), marked together: one letter per distinct protocol
    across all the runs, so a column never mixes protocols unmarked."""
    frames = [eval_protocol(r).assign(run=r.name) for r in runs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    both = pd.concat(frames, ignore_index=True).drop(columns="protocol")
    return metrics.mark_protocols(both)


def eval_paired(run: Run) -> pd.DataFrame:
    """Each checkpoint against the first evaluated one (05's paired.parquet, else from the
    responses)."""
    t = run.table(artifacts.EVALUATION, "paired.parquet")
    if t is not None:
        return t
    resp = run.table(artifacts.EVALUATION, "responses.parquet")
    if resp is None or not run.done(artifacts.EVALUATION):
        return pd.DataFrame()
    return metrics.paired_table(resp)


def paired_runs(runs: list[Run], n_boot: int = 2000) -> pd.DataFrame:
    """Run B (each later run) minus run A (the first), per checkpoint and benchmark both evaluated,
    on the problems both evaluated; with each side's protocol mark and whether they match."""
    resp = {
        r.name: r.table(artifacts.EVALUATION, "responses.parquet")
        for r in runs
        if r.done(artifacts.EVALUATION)
    }
    resp = {k: v for k, v in resp.items() if v is not None}
    if len(runs) < 2 or runs[0].name not in resp:
        return pd.DataFrame()
    marks = runs_protocols(runs)
    mark_of = (
        {(m.run, m.checkpoint, m.benchmark): m.protocol for m in marks.itertuples()}
        if not marks.empty
        else {}
    )
    a_name, a = runs[0].name, resp[runs[0].name]
    rows = []
    for b_run in runs[1:]:
        b = resp.get(b_run.name)
        if b is None:
            continue
        for (ck, bench), ga in a.groupby(["checkpoint", "benchmark"], sort=False):
            gb = b[(b["checkpoint"] == ck) & (b["benchmark"] == bench)]
            if gb.empty:
                continue
            try:
                r = metrics.paired_difference(
                    metrics.per_problem(ga), metrics.per_problem(gb), n_boot=n_boot
                )
            except ValueError:  # no shared problem: not comparable, not a zero
                continue
            pa, pb = (
                mark_of.get((a_name, ck, bench), "?"),
                mark_of.get((b_run.name, ck, bench), "?"),
            )
            rows.append(
                dict(
                    run_a=a_name,
                    run_b=b_run.name,
                    checkpoint=ck,
                    benchmark=bench,
                    protocol_a=pa,
                    protocol_b=pb,
                    same_protocol=pa == pb,
                    **{("avg_" + k if k in ("a", "b") else k): v for k, v in r.items()},
                )
            )
    out = pd.DataFrame(rows)
    out.attrs["legend"] = marks.attrs.get("legend", {}) if not marks.empty else {}
    return out


def grader_audit(run: Run) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(agreement per pair, disagreement rows) of 05's grader audit; empty / None when absent."""
    agree = run.table(artifacts.EVALUATION, "grader_audit.parquet")
    return (pd.DataFrame() if agree is None else agree), run.table(artifacts.EVALUATION, AUDIT_FILE)


def eval_selection(run: Run) -> str:
    """Which checkpoint the run reports, as 05 said it (eval/selection); an older run's report
    states the last checkpoint, which is what the kit has always reported."""
    m = run.metrics(artifacts.EVALUATION)
    if "eval/selection" in m:
        return m["eval/selection"]
    summary, _ = evaluation([run])
    if summary.empty:
        return ""
    last = list(dict.fromkeys(summary["checkpoint"]))[-1]
    return (
        f"reported checkpoint: the last evaluated one ({last}); no checkpoint is chosen by its "
        "evaluation score"
    )
