# `make test` and `make demo` create or refresh .venv on their own, installing exactly the
# versions and hashes in requirements.lock; a stamp file keeps the refresh instant when the
# lock has not changed. `make lock` re-resolves the lock from pyproject.toml and constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --dist loadgroup
DEMO_OUT ?= out/demo
PIP_VERSION := 26.3
LOCK_TOOLS := .lock-tools

.PHONY: venv lock test lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Every package, its version and its hashes: re-resolve after changing pyproject.toml or
# constraints.txt, then run `make test` (it reinstalls from the new lock).
lock:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install -q pip==$(PIP_VERSION) pip-tools==7.7.0
	$(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --extra test \
		--no-emit-index-url --no-emit-find-links -c constraints.txt -o requirements.lock pyproject.toml
	rm -rf $(LOCK_TOOLS)

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

demo: venv
	$(BIN)/handbooster info
	$(BIN)/handbooster run boost --config configs/demo.yaml --out $(DEMO_OUT)
	@echo "open $(DEMO_OUT)/index.html: every step, its outputs and pictures; the boost table is $(DEMO_OUT)/boost_report.md"

bench: venv
	$(BIN)/python benchmarks/bench_hand.py
	$(BIN)/python benchmarks/bench_objects.py
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_grasp.py
	$(BIN)/python benchmarks/bench_demo.py
	$(BIN)/python benchmarks/bench_sampling.py
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_synthesis.py
	$(BIN)/python benchmarks/bench_recon.py

clean:
	rm -rf $(VENV) .pytest_cache out
