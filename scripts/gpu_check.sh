#!/usr/bin/env bash
# GPU check in one command (see scripts/gpu_check.py): 2 GRPO steps through Unsloth LoRA on
# random weights of the real Qwen3-0.6B and Qwen3-4B shapes at the qwen3-4b-24gb stage-1 lengths
# under a 24 GiB cap; writes benchmarks/results/gpu_check.json (commit it after a run).
# Needs torch, transformers, peft, accelerate; everything else comes from the project's gpu extra
# or from --wheels DIR (installed offline with --no-deps; refused when over the 64 MiB budget).
# Usage: scripts/gpu_check.sh [--wheels DIR] [--models 0.6b,4b] [--steps 2] [--out FILE]
# Exit status: 0 every part ok, 1 a part failed (the json says which), 2 no CUDA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
WHEELS=""
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) WHEELS="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' || {
  echo "gpu_check: $PY sees no CUDA GPU (torch.cuda.is_available() is False)" >&2; exit 2; }
if [[ -n "$WHEELS" ]]; then
  "$PY" - "$WHEELS" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "scripts")
from gpu_check import wheel_budget_problem
sizes = [p.stat().st_size for p in Path(sys.argv[1]).glob("*.whl")]
problem = wheel_budget_problem(sizes)
if problem:
    sys.exit(f"gpu_check: {problem}")
PY
  "$PY" -m pip install --no-index --no-deps --quiet "$WHEELS"/*.whl
  "$PY" -m pip install --no-deps --no-build-isolation --quiet -e .
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
exec "$PY" scripts/gpu_check.py "${ARGS[@]+"${ARGS[@]}"}"
