#!/usr/bin/env bash
# GPU check in one command (see scripts/gpu_check.py): the tiny pipeline on CUDA through TRL and
# Unsloth on the toy model; writes benchmarks/results/gpu_check.json (commit it after a run).
# Needs the project installed with the gpu extra:  pip install -e '.[gpu]'  (or environment.yml).
# Usage: scripts/gpu_check.sh [--quick] [--cpu-baseline] [--skip-unsloth]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' || {
  echo "gpu_check: $PY sees no CUDA GPU (torch.cuda.is_available() is False)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
exec "$PY" scripts/gpu_check.py "$@"
