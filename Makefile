# `make demo` and `make test` set up their own virtualenv in .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint train clean-venv proto

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Serving install only (no TensorFlow), then the sidecar demo on the shipped model.
demo: $(BIN)/python
	$(BIN)/pip install -q ".[plot]"
	$(BIN)/logclust demo

# Everything the tests need (training extra for the tiny models, dev tools), then pytest.
test: $(BIN)/python
	$(BIN)/pip install -q -e ".[train,dev]"
	$(BIN)/pytest -q

lint: $(BIN)/python
	$(BIN)/ruff check logclust tests bench training
	$(BIN)/ruff format --check logclust tests bench training
	$(BIN)/mypy logclust training bench

# Retrain the shipped model from this checkout (needs ../shared/data/loghub-2k and the
# distill extra); `training/` is not part of the installed package.
train: $(BIN)/python
	$(BIN)/pip install -q -e ".[train,distill,dev]"
	$(BIN)/python -m training --data ../shared/data/loghub-2k --out models/default \
		--work runs/default --config training/default.toml

proto:
	bash scripts/gen_proto.sh
