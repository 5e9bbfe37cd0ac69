"""What every evaluation number was measured under, and which checkpoint it reports (issue 15).

The protocol stamp: sampling settings (temperature, top-p, top-k, max new tokens), the context
actually used (longest prompt + longest response), YaRN on/off and its factor, samples per
problem, the grader's rule, and the truncation rate. It goes into `protocol.parquet`, metrics.json
(`eval/protocol/...`, `eval/<ckpt>/<bench>/protocol`), the figure captions and the report.
Numbers whose settings differ get different protocol marks (A, B, ...), so no column mixes them
unmarked. Also here: which checkpoint is reported (`selection`), and the grader audit's tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polaris_lib.config.sections import RunConfig
from polaris_lib.evaluate.run import eval_rope, timings
from polaris_lib.grading import (
    AUTHORS_RULE,
    KIT_RULE,
    agreement,
    audit,
    disagreements,
    kit_rule_name,
)
from polaris_lib.metrics import PROTOCOL_SETTINGS, mark_protocols, per_problem, protocol_stamp


def grader_name(cfg: RunConfig) -> str:
    """The rule that produced `correct` (the kit's reward rule, thinking or not)."""
    return kit_rule_name(cfg.model.thinking)


def protocol_table(cfg: RunConfig, summary: pd.DataFrame, out: str | Path | None = None):
    """One protocol row per (checkpoint, benchmark) of a summary table (metrics.summarize).

    context_used = the longest prompt (recorded per pair when it was sampled) + the longest
    response; where a pair has no prompt length recorded it is the longest response alone, and
    `context_note` says so.
    """
    e, rope = cfg.eval, eval_rope(cfg)
    info = timings(out) if out is not None else pd.DataFrame()
    prompt = {}
    if not info.empty and "prompt_tokens_max" in info:
        prompt = {(r.checkpoint, r.benchmark): r.prompt_tokens_max for r in info.itertuples()}
    rows = []
    for r in summary.to_dict("records"):
        p = prompt.get((r["checkpoint"], r["benchmark"]))
        known = p is not None and not pd.isna(p)
        rows.append(
            dict(
                checkpoint=r["checkpoint"],
                benchmark=r["benchmark"],
                temperature=float(e.temperature),
                top_p=float(e.top_p),
                top_k=int(e.top_k),
                max_new_tokens=int(e.max_new_tokens),
                yarn=rope == "yarn",
                yarn_factor=float(cfg.yarn.factor) if rope == "yarn" else float("nan"),
                k=int(r["k"]),
                grader=grader_name(cfg),
                context_used=int(r["max_len"] + (p if known else 0)),
                context_note="prompt + response"
                if known
                else "response only (prompt not recorded)",
                truncation_rate=float(r["truncation_rate"]),
            )
        )
    return mark_protocols(pd.DataFrame(rows))


def protocol_metrics(table: pd.DataFrame) -> dict:
    """metrics.json keys: eval/protocol/<field> (when one protocol covers the run), and per pair
    eval/<ckpt>/<bench>/protocol (the stamp) and .../context_used."""
    out: dict = {}
    for r in table.to_dict("records"):
        p = f"eval/{r['checkpoint']}/{r['benchmark']}"
        out[f"{p}/protocol"] = protocol_stamp(r)
        out[f"{p}/protocol_mark"] = r["protocol"]
        out[f"{p}/context_used"] = int(r["context_used"])
    if len(table):
        first = table.iloc[0]
        for c in (c for c in PROTOCOL_SETTINGS if c != "k"):  # k is per benchmark
            v = first[c].item() if hasattr(first[c], "item") else first[c]  # numpy -> json
            out[f"eval/protocol/{c}"] = None if isinstance(v, float) and np.isnan(v) else v
        out["eval/protocol/marks"] = dict(table.attrs.get("legend", {}))
    return out


# ----------------------------------------------------------------------------- which checkpoint
SELECTIONS = ("final", "best")
FINAL_STATEMENT = (
    "reported checkpoint: the last evaluated one ({last}); no checkpoint is chosen by its "
    "evaluation score"
)


def selection(responses: pd.DataFrame, how: str = "final", seed: int = 0) -> pd.DataFrame:
    """Which checkpoint the run reports, and (how="best") the cost of choosing it by score.

    "final" (default): the last evaluated checkpoint, no selection. "best": the problems of each
    benchmark are split in two halves at random (seeded); the checkpoint with the highest mean
    avg@k over the benchmarks' *selection* halves is chosen and reported on the *held-out* halves,
    which played no part in the choice. attrs['statement'] says what was done, in words.
    """
    if how not in SELECTIONS:
        raise ValueError(f"eval.selection must be one of {SELECTIONS}, got {how!r}")
    cks = list(dict.fromkeys(responses["checkpoint"]))
    rows = []
    for (b, ck), g in responses.groupby(["benchmark", "checkpoint"], sort=False):
        pp = per_problem(g)
        ids = np.array(sorted(pp.index))
        half = set(np.random.default_rng(seed).permutation(ids)[: len(ids) // 2])
        sel = pp.loc[[i for i in pp.index if i in half], "accuracy"]
        held = pp.loc[[i for i in pp.index if i not in half], "accuracy"]
        rows.append(
            dict(
                benchmark=b,
                checkpoint=ck,
                avg=float(pp["accuracy"].mean()),
                selection_half=float(sel.mean()) if len(sel) else float("nan"),
                heldout_half=float(held.mean()) if len(held) else float("nan"),
                heldout_problems=len(held),
            )
        )
    t = pd.DataFrame(rows)
    last = cks[-1]
    if how == "final":
        chosen, statement = last, FINAL_STATEMENT.format(last=last)
    else:
        score = t.groupby("checkpoint", sort=False)["selection_half"].mean().reindex(cks)
        chosen = str(score.idxmax())
        held = t[t.checkpoint == chosen].set_index("benchmark")["heldout_half"]
        statement = (
            f"reported checkpoint: {chosen}, SELECTED by evaluation score (best mean avg@k on a "
            f"random half of each benchmark's problems, seed {seed}); its score on the other, "
            "held-out half: "
            + ", ".join(f"{b} {v:.3f}" for b, v in held.items())
            + ". The selection half's own score is optimistic and is not reported."
        )
    t["reported"] = t["checkpoint"] == chosen
    t.attrs.update(statement=statement, chosen=chosen, how=how)
    return t


# ----------------------------------------------------------------------------- grader audit
def grader_audit(responses: pd.DataFrame, cfg: RunConfig, grader=None):
    """(agreement per pair, disagreement rows): every response regraded by the authors' rule."""
    audited = audit(responses, thinking=cfg.model.thinking, grader=grader)
    table = agreement(audited)
    table.attrs.update(kit_rule=KIT_RULE, second_rule=AUTHORS_RULE)
    return table, disagreements(audited)
