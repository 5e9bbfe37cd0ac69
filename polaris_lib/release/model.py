"""Ship the trained policy (`polaris export model`): a standard Hugging Face model folder.

From a run folder: the chosen stage's checkpoint (a LoRA adapter is merged into its base with
PEFT's merge; full weights are copied), the tokenizer with its chat template, a
generation_config.json holding the sampling settings the evaluation used, the evaluation's RoPE
setting in config.json (YaRN only when the evaluation applied it), and a model card written from
the run's files (polaris_lib/release/card.py). `AutoModelForCausalLM.from_pretrained(out)` and
`vllm serve out` then reproduce the evaluated model without extra flags. The folder is built in a
temporary sibling and renamed into place, so a crash never leaves half a model.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from polaris_lib import artifacts
from polaris_lib.artifacts.manifest import Manifest
from polaris_lib.config import ConfigError, RunConfig, resolve
from polaris_lib.data import hub_reachable
from polaris_lib.evaluate import eval_rope
from polaris_lib.policy import model_path
from polaris_lib.policy.rope import scaled_config, yarn_max_length
from polaris_lib.release.card import model_card, serving_recipe


class ExportError(RuntimeError):
    """The export cannot be done as asked (one line saying why and what to do)."""


def run_config(run_dir: str | Path) -> RunConfig:
    """The RunConfig a finished run used: its manifest's preset, seed and overrides."""
    man = Manifest.load(Path(run_dir))
    if not man:
        raise ExportError(f"{run_dir} is not a polaris run folder (no manifest.json)")
    d = man.data
    return resolve(d["preset"], d.get("overrides", {}), SEED=d.get("seed", 0), RUN_DIR=str(run_dir))


def last_trained_stage(run: RunConfig) -> int:
    """The highest stage whose final checkpoint holds weights."""
    stages = range(1, len(run.stages) + 1)
    final = {k: artifacts.checkpoint_dir(run.run_dir, k) / "final" for k in stages}
    done = [k for k in stages if artifacts.holds_weights(final[k])]
    if not done:
        raise ExportError(f"{run.run_dir} has no trained stage (run 03_grpo_stage first)")
    return max(done)


def _merged_model(run: RunConfig, checkpoint: str):
    """The policy as plain transformers weights: a LoRA adapter merged into its base."""
    import torch

    dtype = torch.float32 if run.model.dtype == "float32" else getattr(torch, run.model.dtype)
    if (Path(checkpoint) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(checkpoint, dtype=dtype).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype)


def _generation_config(run: RunConfig, tokenizer):
    """The sampling settings of the evaluation, as transformers' GenerationConfig."""
    from transformers import GenerationConfig

    e = run.eval
    sampled = e.temperature > 0
    return GenerationConfig(
        do_sample=sampled,
        temperature=e.temperature if sampled else None,
        top_p=e.top_p if sampled else None,
        top_k=e.top_k if sampled and e.top_k > 0 else None,
        max_new_tokens=e.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def export_model(
    run_dir: str | Path,
    out: str | Path,
    *,
    stage: int | None = None,
    push_to_hub: str | None = None,
    log=print,
) -> dict[str, Path]:
    """Write the run's policy (stage `stage`, default the last trained one) as a model folder.

    Returns {"model": out, "card": out/README.md}. With `push_to_hub` the folder is uploaded with
    huggingface_hub; an unreachable hub fails before any work.
    """
    if push_to_hub and not hub_reachable():
        raise ExportError(
            f"--push-to-hub {push_to_hub}: the Hugging Face hub does not answer (offline?); "
            "export without it and upload the folder later with `huggingface-cli upload`"
        )
    run = run_config(run_dir)
    stage = stage or last_trained_stage(run)
    if not 1 <= stage <= len(run.stages):
        raise ConfigError(f"--stage {stage}: the run has stages 1..{len(run.stages)}")
    try:
        checkpoint = artifacts.named_checkpoint(run.run_dir, f"stage{stage}", len(run.stages))
    except FileNotFoundError as exc:
        raise ExportError(str(exc)) from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_folder(run, checkpoint, stage, tmp, log)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(serving_recipe(run, out, eval_rope(run)))
    if push_to_hub:
        from huggingface_hub import HfApi

        HfApi().upload_folder(folder_path=str(out), repo_id=push_to_hub)
        log(f"[polaris] pushed {out} to https://huggingface.co/{push_to_hub}")
    return {"model": out, "card": out / "README.md"}


def _write_folder(run: RunConfig, checkpoint: str, stage: int, out: Path, log) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = _merged_model(run, checkpoint)
    rope = eval_rope(run)
    scaled = scaled_config(model.config, run.yarn, rope)
    if scaled is not None:  # the evaluation's RoPE setting, rope_theta kept (policy/rope.py)
        model.config.rope_parameters = scaled.rope_parameters
        model.config.max_position_embeddings = max(
            model.config.max_position_embeddings, yarn_max_length(run.yarn)
        )
    model.generation_config = _generation_config(run, tokenizer)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    gguf = importlib.util.find_spec("gguf") is not None
    artifacts.write_text(out / "README.md", model_card(run, stage, checkpoint, rope, gguf))
    base = model_path(run, None)
    log(f"[polaris] exported stage {stage} of {run.run_dir} ({checkpoint}; base {base}) -> {out}")
