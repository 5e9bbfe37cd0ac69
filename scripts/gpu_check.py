"""GPU check: the consumer path as it runs on a 24 GB card, on random weights of the real shapes.

Run on a machine with one CUDA GPU (no internet needed):

    scripts/gpu_check.sh [--models 0.6b,4b] [--wheels DIR]     # or: python scripts/gpu_check.py

For each model (Qwen3-0.6B, then Qwen3-4B; architectures shipped in configs/models/, no hub):
1. build a random-weight checkpoint of that shape (bf16 safetensors) and a word-level tokenizer
   with Qwen3's special tokens and chat template (the weights are noise; the shapes are real);
2. cap this process at 24 GiB (`torch.cuda.set_per_process_memory_fraction`);
3. run `--steps` (2) GRPO steps through the kit's own path (load_policy -> Unsloth LoRA,
   to_grpo_config, PolarisGRPOTrainer) at the qwen3-4b-24gb preset's stage-1 lengths, every
   generation forced to the full response length (min_new_tokens), with a seeded random reward
   so every group is mixed and every step really trains (noise weights solve nothing);
4. save the LoRA adapter, reload it through load_policy (Unsloth) and compare its tensors;
5. record peak GPU memory (torch.cuda.max_memory_allocated / _reserved) next to `polaris plan`'s
   estimate for the same stage and GPU size.
vLLM does not travel (its wheel alone is over the 64 MiB wheel budget), so rollouts here use
Unsloth's transformers generation; the vLLM path runs in the CPU lane (`make test-vllm`).

Writes benchmarks/results/gpu_check.json (commit it after a run). Any failed part makes the exit
status 1; without a CUDA GPU it writes nothing and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from polaris_lib.artifacts import write_json  # noqa: E402
from polaris_lib.artifacts.manifest import device_info, package_versions  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "gpu_check.json"
MODEL_CONFIGS = REPO / "configs" / "models"
MODELS = {"0.6b": "Qwen3-0.6B", "4b": "Qwen3-4B"}
PRESET = "qwen3-4b-24gb"
CAP_GIB = 24.0
WHEEL_BUDGET = 64 * 2**20
"""What may travel with the check as wheels (the GPU machine has torch, transformers, peft and
accelerate only)."""
WHEELS = REPO / "scripts" / "gpu_check_wheels.txt"
"""The wheels the check needs beyond those four, with their sizes (read from PyPI's simple API)."""
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ----------------------------------------------------------------------------- wheels
def wheel_ledger(path: Path = WHEELS) -> list[tuple[str, int]]:
    """(wheel file name, bytes) per line of the ledger; '#' starts a comment."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, size = line.split()
            rows.append((name, int(size)))
    return rows


def wheel_budget_problem(sizes: list[int], budget: int = WHEEL_BUDGET) -> str:
    """'' when the wheels fit the budget, else what is over (MiB)."""
    total = sum(sizes)
    if total <= budget:
        return ""
    return f"wheels take {total / 2**20:.1f} MiB, over the {budget / 2**20:.0f} MiB budget"


# ----------------------------------------------------------------------------- checkpoints
def model_config(name: str) -> dict:
    """The shipped config.json of a model (configs/models/<name>.json)."""
    return json.loads((MODEL_CONFIGS / f"{name}.json").read_text())


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer: Qwen3's special tokens at their ids (151643..), the chat roles and
    plain words `w<i>` up to them, Qwen3's chat turn format; eos <|im_end|>, pad <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    first_special = min(vocab_size, 151643)
    roles = ["user", "assistant", "system"]
    vocab = {w: i for i, w in enumerate(roles)}
    vocab.update({f"w{i}": i for i in range(len(roles), first_special)})
    vocab.update({tok: first_special + j for j, tok in enumerate(SPECIALS)})
    vocab["[UNK]"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
        additional_special_tokens=SPECIALS[1:2] + SPECIALS[3:],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_checkpoint(config: dict, out: Path, seed: int = 0) -> Path:
    """Random bf16 weights of `config`'s shape plus the tokenizer, saved as a model folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    build_tokenizer(cfg.vocab_size).save_pretrained(out)
    return out


# ----------------------------------------------------------------------------- one GRPO run
def grpo_config_for(model_dir: Path, run_dir: Path, steps: int):
    """The qwen3-4b-24gb preset on the random checkpoint: stage 1 lengths, `steps` steps, no
    vLLM (it cannot travel), every group trained (random rewards are mixed by construction)."""
    from polaris_lib.config import apply_overrides, get_preset

    return apply_overrides(
        get_preset(PRESET),
        {
            "run_dir": str(run_dir),
            "model.name_or_path": str(model_dir),
            "model.use_vllm": False,
            "stages.0.max_steps": steps,
            "stages.0.save_steps": steps,
            "stages.0.low_mixed_policy": "train_mixed",
            "stages.0.temperature": 1.0,
        },
    )


def random_reward(seed: int) -> Callable:
    """A seeded reward in [0, 1) per completion: noise weights solve nothing, and the check
    measures the path and its memory, not learning."""
    rng = random.Random(seed)

    def reward(completions, **kwargs):
        return [rng.random() for _ in completions]

    reward.__name__ = "random_reward"
    return reward


def grpo_run(name: str, work: Path, steps: int, cap_gib: float) -> dict:
    """Steps 1-5 of the module docstring for one model; raises on any failure."""
    import torch
    from datasets import Dataset

    from polaris_lib.policy.load import load_policy
    from polaris_lib.scale_out.memory import MODEL_SPECS
    from polaris_lib.scale_out.plan import plan_run
    from polaris_lib.training.grpo_config import to_grpo_config
    from polaris_lib.training.trainer import PolarisGRPOTrainer

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * 2**30 / total))
    t0 = time.perf_counter()
    model_dir = build_checkpoint(model_config(name), work / name / "model")
    built_s = time.perf_counter() - t0
    cfg = grpo_config_for(model_dir, work / name / "run", steps)
    st = cfg.stage(1)
    torch.cuda.reset_peak_memory_stats()
    model, tok = load_policy(cfg, None, for_training=True, max_seq_length=cfg.stage_context(1))
    words = [f"w{i}" for i in range(3, 203)]
    prompts = [" ".join(random.Random(i).choices(words, k=32)) for i in range(st.prompts_per_step)]
    data = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p}] for p in prompts],
            "problem_id": [f"gpu_check/{i}" for i in range(len(prompts))],
            "answer": ["0"] * len(prompts),
        }
    )
    args = to_grpo_config(
        cfg,
        1,
        1.0,
        str(work / name / "trl"),
        # forced to the full response length: the memory a 24 GB card must hold at worst
        generation_kwargs={"min_new_tokens": st.max_completion_length},
    )
    trainer = PolarisGRPOTrainer(
        model=model,
        reward_funcs=[random_reward(cfg.seed)],
        args=args,
        train_dataset=data,
        processing_class=tok,
        polaris=st,
        reward_log_path=work / name / "reward_log.jsonl",
        backend=cfg.model.backend,  # refuses a trainer that does not derive from Unsloth's
    )
    t1 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t1
    peak_alloc = torch.cuda.max_memory_allocated() / 2**30
    peak_reserved = torch.cuda.max_memory_reserved() / 2**30
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    if len(logs) < steps:
        raise RuntimeError(f"{name}: {len(logs)} of {steps} GRPO steps logged")
    lengths = [h["completions/mean_length"] for h in logs]
    if min(lengths) < st.max_completion_length:
        raise RuntimeError(
            f"{name}: generations not forced to {st.max_completion_length}: {lengths}"
        )
    adapter = work / name / "adapter"
    trainer.save_model(str(adapter))
    tok.save_pretrained(str(adapter))
    saved = {k: v.detach().float().cpu() for k, v in model.named_parameters() if "lora_" in k}
    del trainer, model
    torch.cuda.empty_cache()
    reloaded, _ = load_policy(cfg, str(adapter), max_seq_length=cfg.stage_context(1))
    again = {k: v.detach().float().cpu() for k, v in reloaded.named_parameters() if "lora_" in k}
    if not saved or set(saved) != set(again):
        raise RuntimeError(f"{name}: reloaded adapter has other LoRA tensors ({len(again)})")
    worst = max(float((saved[k] - again[k]).abs().max()) for k in saved)
    if worst > 1e-2:
        raise RuntimeError(f"{name}: reloaded adapter differs by {worst}")
    plan = plan_run(cfg, cap_gib, spec=MODEL_SPECS[f"Qwen/{name}"]).iloc[0]
    return {
        "status": "ok",
        "stage_lengths": {"prompt": st.max_prompt_length, "response": st.max_completion_length},
        "rollouts_per_step": st.rollouts_per_step,
        "steps": steps,
        "mean_completion_length": lengths,
        "build_s": round(built_s, 1),
        "train_s": round(train_s, 1),
        "peak_allocated_gib": round(peak_alloc, 2),
        "peak_reserved_gib": round(peak_reserved, 2),
        "plan_estimate_gib": round(float(plan.total_gb), 2),
        "plan_fits": bool(plan.fits),
        "cap_gib": cap_gib,
        "adapter_max_abs_diff": worst,
    }


# ----------------------------------------------------------------------------- the check
def run_parts(parts: dict[str, Callable[[], dict]]) -> tuple[dict, int]:
    """Run each part; a raising part is recorded as failed with its traceback. Exit status 0
    only when every part is ok."""
    results, code = {}, 0
    for name, fn in parts.items():
        try:
            results[name] = fn()
        except Exception as exc:  # the check records every failure and fails at the end
            results[name] = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
            }
        if results[name].get("status") != "ok":
            code = 1
    return results, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="0.6b,4b", help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--cap-gib", type=float, default=CAP_GIB)
    ap.add_argument("--work", type=Path, default=Path("/tmp/polaris_gpu_check"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing recorded", file=sys.stderr)
        return 2
    # vLLM does not travel: Unsloth samples with transformers, and its standby mode (which
    # shares memory with a vLLM engine) is off
    os.environ["UNSLOTH_VLLM_STANDBY"] = "0"
    os.environ["POLARIS_UNSLOTH_FIRST"] = "1"  # no vllm here, so the kit would not choose it
    from polaris_lib.policy.load import import_unsloth_first

    import_unsloth_first()  # before trl/peft: Unsloth patches them at import
    names = [MODELS[m.strip()] for m in args.models.split(",") if m.strip()]
    parts = {n: (lambda n=n: grpo_run(n, args.work, args.steps, args.cap_gib)) for n in names}
    t0 = time.perf_counter()
    results, code = run_parts(parts)
    record = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device_info(),
        "packages": package_versions(),
        "preset": PRESET,
        "wall_s": round(time.perf_counter() - t0, 1),
        "models": results,
        "status": "ok" if code == 0 else "failed",
    }
    write_json(args.out, record)
    print(json.dumps({k: v.get("status") for k, v in results.items()}))
    return code


if __name__ == "__main__":
    sys.exit(main())
