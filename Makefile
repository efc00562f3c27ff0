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
	$(BIN)/triage demo --out $(DEMO) --shared-real $(SHARED_REAL)
	@$(BIN)/triage predict $(DEMO)/modality --out $(DEMO)/pictures --overlays --no-progress > /dev/null || true
	@$(BIN)/python -m service.demo_check $(DEMO)/pacs $(DEMO)/pictures

test: $(STAMP) peers
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.inference
	$(BIN)/python -m benchmarks.service
	$(BIN)/python -m benchmarks.training

# Rebuild the bundled model package from phantoms (about 15 minutes on 2 CPU cores).
default-model: $(STAMP)
	$(BIN)/triage train --dataset phantoms --config cpu-small --out triage/models/default \
		--checkpoints build/default-model-checkpoints
