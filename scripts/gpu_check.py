"""GPU check: the tiny pipeline on CUDA through TRL, and Unsloth on the toy model, timed and metered.

Run on a machine with one CUDA GPU and the project installed with the `gpu` extra:

    scripts/gpu_check.sh            # or: python scripts/gpu_check.py [--quick] [--cpu-baseline]

What it records in benchmarks/results/gpu_check.json:
- pipeline: `polaris run --preset tiny` with model.device=cuda, model.dtype=bfloat16 (plain
  transformers + TRL's GRPOTrainer), wall time per step and peak GPU memory per step (sampled with
  nvidia-smi every 0.5 s, all processes on the device: the notebooks run in their own kernels);
- cpu_baseline (--cpu-baseline): the same run on CPU in the same session, and the speed ratio;
- unsloth: FastLanguageModel loading the toy model's local folder, LoRA, a forward/backward and a
  short generation, with time and torch.cuda.max_memory_allocated — or the error if it fails.
Nothing is skipped silently: each part records "status" ok | failed | skipped and why.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from polaris_lib.artifacts import write_json  # noqa: E402
from polaris_lib.artifacts.manifest import device_info, package_versions  # noqa: E402
from polaris_lib.pipeline import QUICK_OVERRIDES  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "gpu_check.json"
CUDA = {"model.device": "cuda", "model.dtype": "bfloat16"}


class GpuMeter:
    """Peak device memory (MiB, nvidia-smi) overall and per labelled phase, sampled in a thread."""

    def __init__(self, every: float = 0.5):
        self.every, self.label, self.peaks = every, "start", {}
        self._stop = threading.Event()
        self._smi = shutil.which("nvidia-smi")

    def used_mib(self) -> int | None:
        if not self._smi:
            return None
        r = subprocess.run(
            [self._smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return int(r.stdout.strip().splitlines()[0]) if r.returncode == 0 else None

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            used = self.used_mib()
            if used is not None:
                self.peaks[self.label] = max(self.peaks.get(self.label, 0), used)

    def __enter__(self):
        self.baseline = self.used_mib()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(timeout=5)


def run_pipeline_on(device: str, run_id: str, quick: bool, meter: GpuMeter | None) -> dict:
    """The tiny pipeline through the real runner; per-step times from its manifest."""
    from polaris_lib.artifacts.manifest import Manifest
    from polaris_lib.pipeline import run_pipeline

    overrides = {**(QUICK_OVERRIDES if quick else {})}
    if device == "cuda":
        overrides.update(CUDA)

    def log(line: str) -> None:
        print(line, flush=True)
        if meter is not None and ": running " in line:  # "[polaris] (i/n) STEP: running NB -> ..."
            meter.label = line.split(") ", 1)[1].split(":", 1)[0]

    t0 = time.time()
    res = {"device": device, "overrides": overrides, "run_id": run_id}
    try:
        out = run_pipeline("tiny", run_id, overrides=overrides, log=log)
        res.update(status="ok" if out.status == "done" else out.status, report=str(out.report))
    except Exception as exc:  # record, do not hide: the check's job is to say what broke
        res.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:4000])
    res["wall_s"] = round(time.time() - t0, 1)
    man = Manifest.load(REPO / "reports" / run_id)
    steps = man.data.get("steps", []) if man else []
    res["steps"] = {
        s["step"]: {
            "status": s.get("status"),
            "elapsed_s": s.get("elapsed_s"),
            "peak_rss_gb": s.get("peak_rss_gb"),
            **({"peak_gpu_mib": meter.peaks.get(s["step"])} if meter else {}),
        }
        for s in steps
    }
    if meter is not None:
        res["peak_gpu_mib"] = max(meter.peaks.values(), default=None)
        res["gpu_baseline_mib"] = meter.baseline
    return res


def unsloth_check() -> dict:
    """FastLanguageModel on the toy model's local folder: load, LoRA, train step, generate."""
    try:
        import unsloth  # noqa: F401  (must be imported before transformers/trl to patch them)
        from unsloth import FastLanguageModel
    except Exception as exc:
        return {"status": "skipped", "reason": f"unsloth does not import: {exc}"[:2000]}
    import torch

    from polaris_lib.config.presets import get_preset
    from polaris_lib.toy.build import build_toy_world
    from polaris_lib.toy.task import make_problems, prompt_text

    cfg = get_preset("tiny")
    res: dict = {"unsloth": package_versions(("unsloth", "unsloth-zoo")).get("unsloth")}
    try:
        folder = build_toy_world(cfg.toy)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        model, tok = FastLanguageModel.from_pretrained(
            model_name=str(folder),
            max_seq_length=cfg.model.max_context,
            dtype=torch.bfloat16,
            load_in_4bit=False,
        )
        model = FastLanguageModel.get_peft_model(
            model,
            r=8,
            lora_alpha=16,
            target_modules=[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
            use_gradient_checkpointing="unsloth",
            random_state=0,
        )
        res["load_s"] = round(time.time() - t0, 2)
        probs = make_problems(cfg.toy, "test", 16, seed=0)
        texts = [prompt_text(tok, p) for p in probs.problem]
        batch = tok(texts, return_tensors="pt", padding=True).to("cuda")
        t0 = time.time()
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        res.update(train_step_s=round(time.time() - t0, 3), loss=float(loss))
        FastLanguageModel.for_inference(model)
        t0 = time.time()
        gen = model.generate(**batch, max_new_tokens=32, do_sample=True, temperature=1.0)
        res.update(
            generate_s=round(time.time() - t0, 3),
            new_tokens=int(gen.shape[1] - batch["input_ids"].shape[1]),
        )
        res.update(status="ok", peak_mem_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1))
    except Exception as exc:
        res.update(
            status="failed",
            error=f"{type(exc).__name__}: {exc}"[:2000],
            traceback=traceback.format_exc()[-3000:],
        )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced sizes (QUICK_OVERRIDES)")
    ap.add_argument("--cpu-baseline", action="store_true", help="also run on CPU, report ratio")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-unsloth", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; nothing recorded", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    result = {
        "date": stamp,
        "device": device_info(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "quick": a.quick,
    }
    if a.skip_pipeline:
        result["pipeline"] = {"status": "skipped", "reason": "--skip-pipeline"}
    else:
        with GpuMeter() as meter:
            result["pipeline"] = run_pipeline_on("cuda", f"gpu-check-{stamp}", a.quick, meter)
    if a.cpu_baseline and not a.skip_pipeline:
        cpu = run_pipeline_on("cpu", f"gpu-check-cpu-{stamp}", a.quick, None)
        result["cpu_baseline"] = cpu
        if cpu["status"] == "ok" and result["pipeline"]["status"] == "ok":
            result["cpu_over_gpu_wall"] = round(cpu["wall_s"] / result["pipeline"]["wall_s"], 2)
    result["unsloth"] = (
        {"status": "skipped", "reason": "--skip-unsloth"} if a.skip_unsloth else unsloth_check()
    )
    write_json(a.out, result)
    print(
        json.dumps(
            {
                k: v.get("status") if isinstance(v, dict) else v
                for k, v in result.items()
                if k in ("pipeline", "cpu_baseline", "unsloth", "cpu_over_gpu_wall")
            }
        )
    )
    print(f"gpu_check: wrote {a.out}")
    ok = result.get("pipeline", {}).get("status") in ("ok", "skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
