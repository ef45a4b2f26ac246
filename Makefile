# The README's two commands are `make demo` and `make test`; both install what they need first.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test test-fast lint bench-crawl bench-features bench-retrieval bench-train bench-serve fuzz clean

setup:
	@bash scripts/bootstrap.sh

## The end-to-end demo on the bundled sample profile (embedded runtime).
demo: setup
	$(BIN)/twin demo

## Everything CI runs: linters, type checks, the layering contract, and all tests (real services).
test: setup lint
	$(BIN)/pytest -q

## The inner loop: linters and the fast, pure unit tests only.
test-fast: setup lint
	$(BIN)/pytest -q tests/unit -m "not integration"

## Fuzz the served API with freshly drawn requests (CI's run draws the same ones every time).
fuzz: setup
	TWIN_FUZZ_RANDOM=1 TWIN_FUZZ_EXAMPLES=$${TWIN_FUZZ_EXAMPLES:-300} $(BIN)/pytest -q -p no:cacheprovider \
		tests/integration/test_serve_transformers.py -k fuzzing

lint: setup
	$(BIN)/ruff check services operators tests bench
	$(BIN)/ruff format --check services operators tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## Benchmarks: run on demand; each prints its result as a ratio against a same-run baseline.
bench-crawl: setup
	$(BIN)/python bench/crawl.py

bench-features: setup
	$(BIN)/python bench/features.py

bench-train: setup
	$(BIN)/python bench/train.py

bench-serve: setup
	$(BIN)/python bench/serve.py

bench-retrieval: setup
	$(BIN)/python bench/retrieval.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
