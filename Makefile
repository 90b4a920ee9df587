# Set-up and day-to-day commands. `make run` and `make test` work on a fresh clone: they create
# .venv, install the CPU build of PyTorch where there is no CUDA (never the multi-GB CUDA wheels),
# install the project, then run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for torch alone, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# on a machine without CUDA whose pip would otherwise pick the CUDA build from PyPI.
TORCH_PIP_ARGS ?=
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)

# Kedro's telemetry would try the network; nothing here may.
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

STAMP := $(VENV)/.installed

.PHONY: install run test lint evaluate repro mlflow-ui gpu-check clean-data help

help:
	@echo "make run        install (if needed) and run the whole pipeline (demo data unless CelebA is present)"
	@echo "make test       install (if needed), lint (ruff) and run the test suite"
	@echo "make lint       ruff check: the style rules in pyproject.toml [tool.ruff]"
	@echo "make evaluate   re-evaluate the current model on the current test split"
	@echo "make repro      dvc repro: run the stages whose inputs changed"
	@echo "make mlflow-ui  open the MLflow UI on http://127.0.0.1:5000"
	@echo "make gpu-check  run and time every CUDA code path (<= 8 min on one GPU; a tiny CPU version without CUDA)"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools<81" wheel
ifeq ($(HAS_CUDA),yes)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
else
	@# The CPU build first, so that resolving the project's own requirements finds torch satisfied.
	@$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$(TORCH_VERSION)' and not torch.version.cuda else 1)" 2>/dev/null \
		|| $(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	@$(BIN)/python -c "import torch, sys; sys.exit('a CUDA build of torch was installed on a machine without CUDA: set TORCH_PIP_ARGS' if torch.version.cuda else 0)"
endif
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/kedro run

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

evaluate: $(STAMP)
	$(BIN)/kedro run --pipelines=evaluate

repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# Every CUDA code path in one command, with figures; extra options: GPU_CHECK_ARGS="--no-compile --out r.json".
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean-data:
	find data -mindepth 2 ! -name .gitkeep ! -name .gitignore -delete
