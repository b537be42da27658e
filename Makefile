# Everything runs from the project's own virtual environment, made by `make install`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install test lint format typecheck check demo bench bench-quick bench-ours bench-parked bench-gc chaos chaos-200 chaos-ops clean

$(BIN)/dbos: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# An editable install has no bytecode, and where PYTHONDONTWRITEBYTECODE is set every `dbos`
	# run would compile the project again (~40 ms); a wheel install is compiled like this.
	$(PY) -m compileall -q runtime dbos_cli
	touch $(BIN)/dbos

install: $(BIN)/dbos

# Two workers (pytest-xdist), each with its own Postgres server: most of the suite waits (on
# processes it kills and relaunches, on timers), so two workers on two cores halve the wall time.
test: install
	$(BIN)/pytest -q -n 2

lint: install
	$(BIN)/ruff check runtime dbos_cli tests examples bench
	$(BIN)/ruff format --check runtime dbos_cli tests examples bench

format: install
	$(BIN)/ruff format runtime dbos_cli tests
	$(BIN)/ruff check --fix runtime dbos_cli tests

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The README's first command: the checkout app on the embedded Postgres, killed mid-run and
# restarted, finishing every checkout exactly once.
demo: install
	$(PY) examples/run_demo.py

# Ours and DBOS Transact (in its own venv) on one fresh Postgres, next to Postgres's own floor:
# bench/results/latest.md and ratios.png, ending with parked waits (bench/parked.py: 10,000
# sleeping and 10,000 recv-waiting workflows per process; bench-quick: 2,000). bench-ours measures
# this runtime alone, in more detail (bench/results/ours.md); bench-parked adds 100,000 sleeping
# workflows in one process, ours only (bench/results/parked.md).
bench: install
	$(PY) bench/compare.py

bench-quick: install
	$(PY) bench/compare.py --quick

bench-ours: install
	$(PY) bench/run.py

# Garbage collection alone (also part of `make bench`): 1,000,000 finished workflows deleted in
# batches while a workload checkpoints; the rate and the checkpoint latency with and without gc.
bench-gc: install
	$(PY) bench/gc_bench.py --json bench/results/gc.json --markdown bench/results/gc.md

bench-parked: install
	$(PY) bench/parked.py --big --markdown bench/results/parked.md --json bench/results/parked.json

# The long chaos run: 30 minutes of faults against three executors (half of them an operator's
# actions through the CLI), then every invariant checked.
chaos: install
	$(PY) -m tests.chaos.harness --minutes 30 --seed 1 --json bench/results/chaos.json

# The same until 200 faults have been injected (one every 1-3 s: about 8 minutes).
chaos-200: install
	$(PY) -m tests.chaos.harness --minutes 60 --faults 200 --fault-every 1 3 --seed 1 \
		--json bench/results/chaos.json

# The acceptance run of the operator faults: two seeds, 300 faults each (half process and database
# faults, half operator actions: cancel, resume, kick, tree, restart, fork), one every 0.7-2 s.
chaos-ops: install
	$(PY) -m tests.chaos.harness --minutes 60 --faults 300 --fault-every 0.7 2 --seed 1 --runs 2 \
		--json bench/results/chaos-ops.json

.PHONY: chaos-failover bench-failover-async

# Failover: the primary of a synchronously replicated pair crashes and its standby is promoted every
# 30-60 s (tests/replication.py), on top of the usual faults, with every executor, the feeder, the
# operator and the checks on one multi-host URL. Two seeds, 10 minutes each: every invariant must
# hold, and no acknowledged commit may be lost.
chaos-failover: install
	$(PY) -m tests.chaos.harness --minutes 10 --runs 2 --seed 1 --replication sync \
		--failover-every 30 60 --json bench/results/chaos-failover.json

# What asynchronous replication loses at a failover, with the standby in step and held behind
# (bench/results/failover-async.md; docs/scaling.md quotes it).
bench-failover-async: install
	$(PY) bench/failover_async.py --markdown bench/results/failover-async.md \
		--json bench/results/failover-async.json

.PHONY: bench-profile

# Where a 3-step workflow's time goes: the workloads of bench/ab.py under cProfile (merged over
# the 32 worker threads) and Postgres's pg_stat_statements per workflow (bench/results/profile.md).
bench-profile: install
	$(PY) bench/profile_hot_path.py
