# The two README commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sluice-installed
UV_VERSION := 0.13.9

.PHONY: setup demo test test-fast test-kind chart-smoke images bench bench-scale bench-faults lint lock step-specs clean

setup: $(STAMP)

# Bytecode compiled at install: uv does not by default, and where PYTHONDONTWRITEBYTECODE is set (this machine) every
# process would compile what it imports from source (scikit-learn: ~2.5 s of CPU in each step process).
$(STAMP): pyproject.toml images/ml-steps/pyproject.toml requirements/lock.txt requirements/overrides.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sluice needs Python 3.11+; run: make PYTHON=python3.12 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode --override requirements/overrides.txt -r requirements/lock.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . -e images/ml-steps
	$(BIN)/python -m compileall -q operators/sluice images/ml-steps/sluice_steps
	@touch $(STAMP)

demo: setup
	$(BIN)/sluice demo

# The images first where an engine is (or can be installed: root + apt), so the container tests find them; where
# none is, one line says so and those tests skip (or fail, under SLUICE_REQUIRE_CONTAINERS=1: for CI).
# Then two runs: everything else on both cores (pytest-xdist; a file stays on one worker, so its module fixtures run
# once), then, one at a time, the directories that start whole stacks, the chart's install or a kind cluster (two at
# once on 2 cores would time out). Both always run; make test fails if either fails (or collects nothing: exit 5).
HEAVY_TESTS := tests/integration tests/chart_runtime tests/kind
test: setup
	$(BIN)/python tools/images.py build --if-possible
	status=0; \
	$(BIN)/pytest -n 2 --dist loadfile $(HEAVY_TESTS:%=--ignore=%) || status=1; \
	$(BIN)/pytest $(HEAVY_TESTS) || status=1; \
	exit $$status

# Fast feedback (README, Tests): no stacks, no chart runtime, no full demos or pipeline runs, no real workers; on both
# cores (pytest-xdist, a file per worker at a time).
test-fast: setup
	$(BIN)/pytest -m "not integration and not slow" -n 2 --dist loadfile

# The chart, run: `helm template` output of the default values executed as local processes (only the kubelet
# replaced), its bundled PostgreSQL and Redis included; prints what each check proved. Part of `make test` too.
chart-smoke: setup
	$(BIN)/pytest tests/chart_runtime

# Both images (images/ml-steps, images/airflow) under the chart's refs, with podman (docker where its daemon answers;
# podman + runc + debootstrap installed from apt when none is and we are root). On the official bases where they
# can be pulled, else on a Debian trixie base made here once (docs/containers.md). 2-core machine: cold (empty image
# store, base made) 2 min 27 s; warm, nothing changed 3 s; after a one-line edit to a step 9 s, under operators/ 5 s.
images: setup
	$(BIN)/python tools/images.py build

# The kind suite: needs kind and docker/podman (skips with the reason where they are missing).
test-kind: setup
	$(BIN)/pytest tests/kind -m kind -rs

# Benchmarks that print figures (never timed assertions in tests); JSON lands in bench/results/.
bench: setup
	$(BIN)/python bench/launch_overhead.py --json bench/results/launch_overhead.json  # + a container column
	$(BIN)/python bench/demo_launchers.py --json bench/results/demo_launchers.json  # needs `make images`
	$(BIN)/python bench/scaling_query.py  # 500 k rows + a simulated day; --rows 5000000 for the 5 M figure
	$(BIN)/python bench/throughput.py --tasks 200 1000 --json bench/results/throughput.json --plots docs/img
	$(BIN)/python bench/pipeline_e2e.py --json bench/results/pipeline_e2e.json

# Data at scale (separate: ~30 min here): the sharded pipeline over 20 M generated rows on the embedded default and
# the local stack, against one Python process doing the same computation; memory, scan rate, overhead.
# Fault trials on a real local stack (~20 min here): SIGKILLed busy workers, broker restarts, `sluice down` on a
# restarted worker; prints tasks lost, run twice and overlapped (all 0 expected) and recovery times.
bench-faults: setup
	$(BIN)/python bench/faults.py --trials 20 --json bench/results/faults.json

bench-scale: setup
	$(BIN)/python bench/scale.py --json bench/results/scale.json

# ruff, mypy (strict, [tool.mypy]) and deptry (every import declared: the sluice package and DAGs here, the step
# image's package against its own pyproject).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/deptry operators dags
	cd images/ml-steps && ../../$(BIN)/deptry .

# Re-pin every dependency (run after editing either pyproject.toml): the dev/platform lock and the
# step image's hashed lock, for its base's Python (3.13) and with the platform lock as a constraint, so that
# shared pins agree. requirements/overrides.txt says why it exists.
lock: setup
	$(BIN)/uv pip compile pyproject.toml images/ml-steps/pyproject.toml --extra dev --universal \
		--python-version 3.11 --override requirements/overrides.txt -o requirements/lock.txt
	$(BIN)/uv pip compile images/ml-steps/pyproject.toml --python-version 3.13 -c requirements/lock.txt \
		--python-platform x86_64-manylinux_2_28 --generate-hashes -o images/ml-steps/requirements.lock

# Each step image's specs, as its package prints them (`sluice-step --describe`), shipped in the sluice package:
# what DAGs are checked against at parse. tests/steps/test_step_specs.py fails when the copy differs.
step-specs: setup
	$(BIN)/sluice-step --describe > operators/sluice/step_specs/ml-steps.json

clean:
	rm -rf $(VENV) .sluice .tools .pytest_cache .ruff_cache .mypy_cache
