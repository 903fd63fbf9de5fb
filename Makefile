# `make test` and `make demo` create or refresh .venv on their own; a stamp file keeps
# the refresh instant when pyproject.toml and constraints.txt have not changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2 --dist loadgroup
DEMO_OUT ?= out/demo

.PHONY: venv test lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

demo: venv
	$(BIN)/handbooster info
	$(BIN)/handbooster run boost --config configs/demo.yaml --out $(DEMO_OUT)
	@echo "open $(DEMO_OUT)/index.html: every step, its outputs and pictures; the boost table is $(DEMO_OUT)/experiment/boost_report.md"

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
