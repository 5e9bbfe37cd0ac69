"""CPU sampling throughput: batched `sample()` against a one-prompt-at-a-time loop.

Same model (the default toy world), problems, temperature, max_new_tokens and seed; one run each.
Throughput = generated tokens / wall second. Target: batched >= 4x the loop.
Writes benchmarks/results/sampling_throughput.json.

    .venv/bin/python benchmarks/sampling_throughput.py [--problems 16] [--n 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from polaris_lib import toy
from polaris_lib.artifacts import write_json
from polaris_lib.config.sections import ToyConfig
from polaris_lib.policy.sampling import sample
from polaris_lib.toy import build as toy_build

OUT = Path(__file__).parent / "results" / "sampling_throughput.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    cfg = ToyConfig()
    model, tok = toy_build.load_toy_world(cfg)
    probs = toy.make_problems(cfg, "probe", args.problems)
    kw = dict(temperature=1.0, max_new_tokens=args.max_new_tokens, progress=False)

    t = time.perf_counter()
    batched = sample(model, tok, probs, n=args.n, batch_size=args.problems * args.n, **kw)
    t_batched = time.perf_counter() - t

    t = time.perf_counter()
    loop_tokens = 0
    for i in range(len(probs)):
        for j in range(args.n):
            one = sample(model, tok, probs.iloc[[i]], n=1, batch_size=1, seed=j, **kw)
            loop_tokens += int(one.n_tokens.sum())
    t_loop = time.perf_counter() - t

    tps_b = batched.n_tokens.sum() / t_batched
    tps_l = loop_tokens / t_loop
    result = {
        "completions": len(batched),
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "batched_tokens": int(batched.n_tokens.sum()),
        "batched_s": round(t_batched, 2),
        "batched_tokens_per_s": round(float(tps_b), 1),
        "loop_tokens": loop_tokens,
        "loop_s": round(t_loop, 2),
        "loop_tokens_per_s": round(float(tps_l), 1),
        "ratio_batched_vs_loop": round(float(tps_b / tps_l), 2),
        "target_ratio": 4.0,
        "note": "one run each on a shared 2-core machine (+-15% noise)",
    }
    write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
