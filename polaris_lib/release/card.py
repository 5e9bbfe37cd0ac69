"""The model card and serving recipe of an exported policy, written from the run's files alone.

No number appears here that the run did not produce: the stages' metrics.json (03), the
evaluation's summary.parquet and config (05), and the manifest (preset, overrides, commit,
package versions).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import Manifest
from polaris_lib.config import RunConfig
from polaris_lib.data import harness_only
from polaris_lib.metrics import INTERVAL_METHOD
from polaris_lib.policy.rope import yarn_max_length

PACKAGES = ("torch", "transformers", "trl", "peft", "vllm", "unsloth", "math-verify")
"""Package versions the card lists (when the manifest recorded them)."""


def _metrics(run: RunConfig, step: str, stage: int | None = None) -> dict:
    path = artifacts.step_dir(run.run_dir, step, stage, create=False) / "metrics.json"
    return artifacts.read_json(path) if path.exists() else {}


def _fmt(value, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def stages_table(run: RunConfig, upto: int) -> str:
    """One markdown row per trained stage: length, temperature, steps, data, held-out accuracy."""
    rows = [
        "| stage | response length | temperature | steps | problems | held-out acc [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for k in range(1, upto + 1):
        m = _metrics(run, artifacts.GRPO_STAGE, k)
        acc = (
            f"{_fmt(m.get('train/heldout_acc'))} [{_fmt(m.get('train/heldout_acc_lo'))}, "
            f"{_fmt(m.get('train/heldout_acc_hi'))}]"
        )
        rows.append(
            f"| {k} | {run.stage(k).max_completion_length} | {_fmt(m.get('train/temperature'), 'g')}"
            f" | {m.get('train/steps', '—')} | {m.get('train/dataset_size', '—')} | {acc} |"
        )
    return "\n".join(rows)


def evaluation_table(run: RunConfig) -> str:
    """The evaluation's avg@k per checkpoint and benchmark with its interval, as 05 recorded it."""
    path = artifacts.step_dir(run.run_dir, artifacts.EVALUATION, create=False) / "summary.parquet"
    if not path.exists():
        return "*The run has no evaluation (05_eval_aime did not run).*"
    summary = pd.read_parquet(path)
    rows = [
        "| checkpoint | benchmark | k | avg@k | 95% interval | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary.to_dict("records"):
        note = "harness check only" if harness_only(run, r["benchmark"]) else ""
        rows.append(
            f"| {r['checkpoint']} | {r['benchmark']} | {r['k']} | {r['avg']:.3f} | "
            f"[{r['ci_lo']:.3f}, {r['ci_hi']:.3f}] | {note} |"
        )
    return "\n".join(rows)


def protocol(run: RunConfig, rope: str) -> str:
    """How the evaluation sampled: the settings generation_config.json carries, and the RoPE."""
    e = run.eval
    rope_text = "no RoPE scaling" if rope == "none" else f"{rope} factor {run.yarn.factor:g}"
    return (
        f"temperature {e.temperature}, top_p {e.top_p}, top_k {e.top_k or 'off'}, at most "
        f"{e.max_new_tokens} new tokens, {rope_text}; interval: {INTERVAL_METHOD}"
    )


def context_length(run: RunConfig, rope: str) -> int:
    """The context the evaluated model had: the model's own, or YaRN's extension."""
    return yarn_max_length(run.yarn) if rope != "none" else run.model.max_context


def serving_recipe(run: RunConfig, out: str | Path, rope: str) -> str:
    """The commands that serve the exported folder with the evaluation's settings."""
    e = run.eval
    return f"""To serve it as it was evaluated:

```bash
vllm serve {out} --max-model-len {context_length(run, rope)}
```

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{out}")
tokenizer = AutoTokenizer.from_pretrained("{out}")
messages = [{{"role": "user", "content": "1+2+3? {run.model.instruction_suffix}".strip()}}]
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
print(tokenizer.decode(model.generate(ids, max_new_tokens={e.max_new_tokens})[0]))
```

Sampling settings (temperature, top-p, top-k, max new tokens) come from generation_config.json;
the RoPE setting is in config.json, so neither command needs extra flags."""


def model_card(run: RunConfig, stage: int, checkpoint: str, rope: str, gguf: bool) -> str:
    """README.md of the exported folder."""
    man = Manifest.load(Path(run.run_dir)).data
    git = man.get("git", {})
    versions = ", ".join(
        f"{p} {v}" for p, v in man.get("packages", {}).items() if p in PACKAGES and v
    )
    limits = (
        "This is the kit's own 309K-parameter toy model trained on synthetic sums: it cannot do "
        "competition math; its AIME numbers only prove the evaluation harness."
        if run.model.name_or_path == "toy"
        else "The numbers above are this run's only: small samples per problem give wide "
        "intervals, and nothing here was evaluated outside the listed benchmarks."
    )
    gguf_text = (
        "The `gguf` package is installed: convert with llama.cpp's `convert_hf_to_gguf.py` on "
        "this folder."
        if gguf
        else "For llama.cpp-style local use, convert this folder with llama.cpp's "
        "`convert_hf_to_gguf.py` (the kit does not ship a converter)."
    )
    overrides = man.get("overrides") or {}
    return f"""# {run.model.name_or_path} after POLARIS stage {stage} (polaris-kit run {man.get("run_id")})

Post-trained with the POLARIS recipe by [polaris-kit](https://github.com/) from the run folder
`{run.run_dir}` (checkpoint `{checkpoint}`).

- base model: `{run.model.name_or_path}`; preset `{run.preset}`; seed {run.seed}
- overrides: {overrides or "none"}
- kit commit: `{git.get("commit", "?")}`{" (dirty)" if git.get("dirty") else ""}
- packages: {versions or "not recorded"}

## Stages

{stages_table(run, stage)}

## Evaluation

Protocol: {protocol(run, rope)}.

{evaluation_table(run)}

## How to use

{serving_recipe(run, ".", rope)}

{gguf_text}

## Limits

{limits}
"""
