# A newcomer's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every version pip installs, with its files' hashes, for Python 3.11 on Linux x86_64:
# LOCK, what `make install` installs (the dev and bench extras), and RUNTIME_LOCK, the
# dependencies alone (the Dockerfile's), the same versions. `make lock` writes both.
LOCK := requirements-dev.lock
RUNTIME_LOCK := requirements.lock

.PHONY: all install node lock configuration compiled debs browser promtool kcat run test test-kafka cluster unit integration faults lint types bench soak clean

all: lint types test

# The lock, then our own packages (editable) with no dependency of their own: pip's hash
# checking takes no editable install in the same command.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

# ESLint for the web app (gateway/web/: the app itself has no build step and no
# dependency), from package-lock.json, again only when it or package.json changes. The
# lock names each package's version and hash, not where it was fetched from (.npmrc).
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make node: Node.js with npm is needed (ESLint)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

node: $(NODE_STAMP)

# After a change to pyproject.toml's dependencies; a lock keeps the versions it has where
# they still fit. LOCK_ARGS=--upgrade takes the newest of everything (or
# `--upgrade-package NAME`); the `==` pins in pyproject.toml move only by hand. uv
# resolves (only here: pip installs from the locks); no index's address is written.
UV_VERSION := 0.13.10
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet pyproject.toml --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --generate-hashes --custom-compile-command 'make lock'
lock:
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(UV_COMPILE) $(LOCK_ARGS) --extra dev --extra bench -o $(LOCK)
	$(UV_COMPILE) $(LOCK_ARGS) --constraint $(LOCK) -o $(RUNTIME_LOCK)
	@! grep -n '://' $(LOCK) $(RUNTIME_LOCK) || { echo "make lock: an address in a lock"; exit 1; }

# docs/configuration.md from the settings' declarations (a unit test fails while it differs).
configuration: install
	$(BIN)/python -m deploy.configuration > docs/configuration.md

# Our modules compiled once: a test run starts some 400 processes, and where
# PYTHONDONTWRITEBYTECODE is set (as on the CI machines) each would compile every module
# again (0.3-0.5 CPU-s a start).
compiled: install
	@$(BIN)/python -m compileall -q -j 0 cli gateway allocator notifier runtime schemas deploy bench

# Debian's packages the tests drive, each a command: chromium (the browser tests; Playwright's
# own browser download is not used), promtool (the prometheus package: the alert rules'
# tests) and kcat (the Kafka half reads the local stack's log as docs/features.md's analysts do).
# What is missing is installed in one apt-get (two at once, as make -j2 would run them,
# would fight over its lock), which needs root.
DEBS := chromium:chromium promtool:prometheus kcat:kcat
debs:
	@missing=; for each in $(DEBS); do \
		command -v $${each%%:*} >/dev/null || missing="$$missing $${each#*:}"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
		{ echo "make debs: Debian's packages$$missing are needed (as root: apt-get install$$missing)"; \
		exit 1; }
browser promtool kcat: debs

# BROKER=kafka: Apache Kafka (needs Java, and Maven once for its jars) keeps the log in
# .data/kafka across runs; the default, Tansu, needs nothing but pip and keeps it in memory.
BROKER ?= tansu
run: install
	$(BIN)/coupons dev --demo --broker $(BROKER)

# The unit tests; then the integration and fault tests on Tansu and, beside them, on Apache
# Kafka (test-kafka): each half waits on its broker and parts much of the time, so together
# they fill the two cores. The tests marked `alone` (they assert how long something takes)
# run last, each broker's beside the other's and nothing else. Each run has a folder
# of its own under one temporary directory, removed when all passed and kept (with every
# part's log) when one failed. Each run lists its slowest tests: where CI's time goes.
DURATIONS ?= 15
SUITE := tests/integration tests/faults --durations=$(DURATIONS)
test: compiled browser promtool
	$(BIN)/pytest -q tests/unit
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/coupons-tests.XXXXXX"); \
	$(MAKE) --no-print-directory test-kafka MARKS='-m "not alone"' BASETEMP=$$tmp/kafka \
		> $$tmp/kafka.out 2>&1 & kafka=$$!; \
	echo "--- Tansu, and Apache Kafka beside it:"; \
	$(BIN)/pytest -q -m "not alone" $(SUITE) --basetemp=$$tmp/tansu; tansu=$$?; \
	wait $$kafka; kafka=$$?; \
	echo "--- Apache Kafka, beside Tansu:"; cat $$tmp/kafka.out; \
	kafka_alone=; if ! grep -q "did not run" $$tmp/kafka.out; then \
		$(MAKE) --no-print-directory test-kafka MARKS='-m alone' BASETEMP=$$tmp/kafka-alone \
			> $$tmp/kafka-alone.out 2>&1 & kafka_alone=$$!; fi; \
	echo "--- the tests marked alone, on Tansu$${kafka_alone:+, and on Apache Kafka beside them}:"; \
	$(BIN)/pytest -q -m alone $(SUITE) --basetemp=$$tmp/tansu-alone; alone=$$?; \
	if [ -n "$$kafka_alone" ]; then wait $$kafka_alone; kafka_alone=$$?; \
		echo "--- the tests marked alone, on Apache Kafka:"; cat $$tmp/kafka-alone.out; \
	else kafka_alone=0; fi; \
	if [ $$tansu$$kafka$$alone$$kafka_alone = 0000 ]; then rm -rf $$tmp; \
	else echo "make test: failed; the parts' logs are kept in $$tmp"; exit 1; fi

# Needs Java (and Maven once, to fetch Kafka's jars): without them, one line says why the
# Kafka half did not run; with CI=true that is a failure. MARKS and BASETEMP: make test's.
test-kafka: compiled
	@if why=$$($(BIN)/python -m deploy.kafka_broker); then \
		$(MAKE) --no-print-directory kcat && \
		$(BIN)/pytest -q --backend=kafka $(MARKS) $(SUITE) \
			$(if $(BASETEMP),--basetemp=$(BASETEMP)); \
	else \
		echo "make test: the Apache Kafka half did not run: $$why"; [ "$${CI:-}" != true ]; \
	fi

# Three Apache Kafka nodes, their partition leader and active controller SIGKILLed under
# claims (tests/faults/test_cluster.py), on its own and saying what it measured; `make test`
# runs it in the Apache Kafka half.
cluster: install
	$(BIN)/pytest -q -s --backend=kafka tests/faults/test_cluster.py

unit: install promtool
	$(BIN)/pytest -q tests/unit

integration: install browser
	$(BIN)/pytest -q tests/integration

# Parts SIGKILLed, PostgreSQL and the broker stopped, under load; each test prints what it
# did and what it checked. Also part of `make test`.
faults: install
	$(BIN)/pytest -q -s tests/faults

lint: install node
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	node_modules/.bin/eslint --max-warnings=0 gateway/web eslint.config.js

types: install
	$(BIN)/mypy cli gateway allocator notifier schemas runtime deploy bench tests

# The noon burst, sustained grants and replay, against the baseline and the ceiling;
# the report goes to bench/results/, and a full run's figures to docs/benchmark.md.
# BENCH_ARGS passes options: make bench BENCH_ARGS='--users 20000'
bench: install
	$(BIN)/coupons bench $(BENCH_ARGS)

# Ten minutes of steady mixed load with every process's memory sampled; the report goes to
# bench/results/. SOAK_ARGS passes options: make soak SOAK_ARGS='--minutes 3'
soak: install
	$(BIN)/coupons soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) node_modules .data .pytest_cache .mypy_cache .ruff_cache .hypothesis
