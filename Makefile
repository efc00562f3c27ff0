# The few targets a newcomer needs. Each is a thin call into the project's own commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-output
SHARED_REAL := ../shared/data/real

.PHONY: demo test lint bench peers clean-demo default-model

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	@touch $@

# Debian peers the tests talk to; installed when we are root, otherwise listed.
peers:
	@bash deploy/install-peers.sh

demo: $(STAMP)
	@rm -rf $(DEMO)
	$(BIN)/triage synth --out $(DEMO)/studies --studies 8 --seed 4242 --prevalence 0.5 --max-size 2048
	$(BIN)/triage predict $(DEMO)/studies $(wildcard $(SHARED_REAL)/*.dcm) \
		$$($(BIN)/python -c 'from pydicom.data import get_testdata_file as f; print(f("RG1_UNCR.dcm"), f("RG3_J2KR.dcm"))') \
		--out $(DEMO)/results --overlays
	@$(BIN)/python -m service.demo_check $(DEMO)/results

test: $(STAMP) peers
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/inference.py

# Rebuild the bundled model package from phantoms (about 15 minutes on 2 CPU cores).
default-model: $(STAMP)
	$(BIN)/triage train --dataset phantoms --out triage/models/default
