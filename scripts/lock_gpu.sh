#!/usr/bin/env bash
# Resolve the GPU dependency set WITHOUT installing it, and write the lock:
#   locks/gpu-requirements.txt   every package of the set as name==version (the lock)
#   locks/gpu-resolution.json    how it was made: command, date, pip version, target, inputs, result
#
# Input = pyproject.toml's CPU set + the `gpu` and `dev` extras (a gpu pin replaces the CPU pin of
# the same package, e.g. torch), then locks/gpu-overrides.txt (documented there). The target is
# Linux x86_64 (glibc >= 2.35, e.g. Ubuntu 22.04), CPython 3.11, binary wheels only.
# The machine's pip config (constraint file, local wheel folder, file indexes) is ignored for this
# one command: PIP_CONFIG_FILE=/dev/null, so only the public registry answers.
# pip downloads whole wheels when the index serves no PEP 658 metadata: expect ~6 GB of CUDA wheels
# in a temporary cache (deleted at the end; KEEP_CACHE=1 keeps it) and ~3 minutes on a fast link.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
WORK="$(mktemp -d /tmp/polaris-lock.XXXXXX)"
cleanup() { [ "${KEEP_CACHE:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

"$PY" -m venv "$WORK/venv"
PIP_CONFIG_FILE=/dev/null "$WORK/venv/bin/pip" install -q -U pip >/dev/null

# Combined requirement list from pyproject.toml (+ overrides), one per line.
"$PY" - "$WORK/in.txt" <<'EOF'
import re, sys, tomllib
py = tomllib.load(open("pyproject.toml", "rb"))["project"]
name = lambda r: re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-")
reqs = {name(r): r for r in py["dependencies"]}
for extra in ("gpu", "dev"):
    reqs.update({name(r): r for r in py["optional-dependencies"][extra]})
for line in open("locks/gpu-overrides.txt"):
    line = line.split("#", 1)[0].strip()
    if line:
        reqs[name(line)] = line
open(sys.argv[1], "w").write("\n".join(reqs.values()) + "\n")
EOF

PLATFORMS=()
for m in $(seq 35 -1 5); do PLATFORMS+=(--platform "manylinux_2_${m}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64)
CMD=(pip install --dry-run --ignore-installed --only-binary=:all: --python-version 3.11
     --implementation cp "${PLATFORMS[@]}" --report "$WORK/report.json" -r "$WORK/in.txt")
echo "resolving $(grep -c . "$WORK/in.txt") requirements for linux x86_64 / CPython 3.11 (several minutes)..."
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= PIP_CACHE_DIR="$WORK/cache" \
    "$WORK/venv/bin/${CMD[0]}" "${CMD[@]:1}" > "$WORK/pip.log" 2>&1 || {
    grep -vE "Downloading|━|^Collecting|WARNING: Location" "$WORK/pip.log" | tail -40; exit 1; }

PIPV="$("$WORK/venv/bin/pip" --version | cut -d' ' -f2)"
"$PY" - "$WORK" "$PIPV" "${CMD[*]}" <<'EOF'
import datetime, json, os, re, sys, tomllib
work, pipv, cmd = sys.argv[1:4]
report = json.load(open(f"{work}/report.json"))
got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in report["install"]}
inputs = [l.strip() for l in open(f"{work}/in.txt") if l.strip()]
# The library code must be identical on CPU and GPU: these must resolve to the CPU set's pins.
cpu = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for r in cpu:
    m = re.match(r"([A-Za-z0-9_.-]+)(\[.*\])?==(\S+)", r)
    if m and m.group(1).lower() in ("trl", "transformers", "datasets", "peft", "accelerate"):
        assert got[m.group(1).lower()] == m.group(3), f"{m.group(1)}: GPU set has {got[m.group(1).lower()]}, CPU set {m.group(3)}"
date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
lines = sorted(f"{k}=={v}" for k, v in got.items())
head = [f"# GPU dependency set, resolved {date} with pip {pipv} (dry run, nothing installed):",
        "#   PIP_CONFIG_FILE=/dev/null " + cmd.replace(work, "$TMP"),
        "# Target: Linux x86_64 (manylinux <= 2.35), CPython 3.11. Regenerate: scripts/lock_gpu.sh"]
tmp = "locks/gpu-requirements.txt.tmp"
open(tmp, "w").write("\n".join(head + lines) + "\n")
os.replace(tmp, "locks/gpu-requirements.txt")
res = {"date": date, "pip_version": pipv, "command": "PIP_CONFIG_FILE=/dev/null " + cmd.replace(work, "$TMP"),
       "target": {"python": "3.11", "implementation": "cp", "platform": "linux x86_64, manylinux <= 2_35"},
       "inputs": inputs, "n_packages": len(got), "resolved": dict(sorted(got.items()))}
tmp = "locks/gpu-resolution.json.tmp"
open(tmp, "w").write(json.dumps(res, indent=1) + "\n")
os.replace(tmp, "locks/gpu-resolution.json")
key = ["torch", "transformers", "trl", "datasets", "peft", "accelerate", "numpy", "unsloth", "unsloth-zoo", "vllm", "xformers", "bitsandbytes"]
print(f"resolved {len(got)} packages: " + ", ".join(f"{k}=={got[k]}" for k in key if k in got))
EOF
