"""Test session set-up: an isolated embedded Airflow (own SLUICE_HOME, SQLite DB) per pytest session.

The environment must be set before anything imports Airflow, hence at conftest import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="sluice-tests-"))

os.environ.pop("SLUICE_PLATFORM_FILE", None)
os.environ.pop("SLUICE_LAUNCHER", None)
os.environ.pop("SLUICE_ARTIFACT_ROOT", None)

from sluice import embedded  # noqa: E402

os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"  # task logs are asserted on
embedded.configure(home=_SESSION_HOME, dags_folder=REPO / "dags")
os.environ["SLUICE_DEMO_DATA"] = str(_SESSION_HOME / "demo-data")


# pytest-timeout: `timeout` in pyproject.toml (300 s, fixtures included) bounds every test; these directories start
# whole stacks or the chart's install in a fixture and wait on runs with bounds of their own (RUN_BOUND,
# START_BOUND), so they get more. A test's own @pytest.mark.timeout wins.
LONG_TIMEOUTS = {
    REPO / "tests" / "integration": 900,  # a stack's start-up (~75 s) plus runs bounded at 300 s
    REPO / "tests" / "chart_runtime": 1800,  # the install converges within 420 s; runs are bounded at 600 s
    REPO / "tests" / "kind": 3600,  # image builds (bounded at 1800 s) and a cluster
}


def pytest_configure(config: pytest.Config) -> None:
    # GNU readline (pytest imports it) puts COLUMNS=80 and LINES into the C environment, not into os.environ: every
    # child inherits them, pytest-xdist's workers too, where os.environ then has COLUMNS=80 and Rich consoles made at
    # import (sluice.stack.commands) wrap at 80 instead of 200. What the user did not set goes before any child starts.
    for name in ("COLUMNS", "LINES"):
        if name not in os.environ:
            os.unsetenv(name)
    # Under pytest-xdist (`-n`), helm and helm3 are fetched into .tools/bin once, here in the controller, before
    # any worker starts: two workers fetching them at once would share one download folder and one temp file name.
    # Where the fetch fails, the chart tests say why, as without xdist.
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        from tools.ensure_helm import helm3_path, helm_path

        with contextlib.suppress(Exception):
            if not os.environ.get("HELM"):
                helm_path()
            helm3_path()


# pytest-xdist's `--dist loadfile` (make test, make test-fast) keeps a file on one worker, so its module fixtures run
# once. These files share one session fixture as well (one training run of the example pipeline,
# tests/pipelines/conftest.py): they go to one worker together, or each worker would run it.
SAME_WORKER = {
    "trained": (
        "tests/pipelines/test_batch_scoring_and_backfill.py",
        "tests/pipelines/test_ml_training_pipeline.py",
        "tests/pipelines/test_pipelines_in_containers.py",
    ),
}
_SCOPE_OF_FILE = {file: f"session fixture {name}" for name, files in SAME_WORKER.items() for file in files}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None  # xdist's own scheduler
    from xdist.scheduler import LoadFileScheduling

    # pytest_xdist_make_scheduler is xdist's public hook; _split_scope is the method its own schedulers override to
    # group tests (loadfile, loadgroup). Should a later xdist (pinned: 3.8.0) stop calling it, this is plain loadfile:
    # each worker that gets one of these files runs the training once, slower but just as correct.
    class SharedFixtureFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return _SCOPE_OF_FILE.get(file, file)

    return SharedFixtureFileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name, files in SAME_WORKER.items():
            if name in getattr(item, "fixturenames", ()) and item.nodeid.split("::", 1)[0] not in files:
                raise pytest.UsageError(f"{item.nodeid} uses the session fixture {name}: add its file to SAME_WORKER")
        if item.get_closest_marker("timeout") is not None:
            continue
        for folder, seconds in LONG_TIMEOUTS.items():
            if item.path.is_relative_to(folder):
                item.add_marker(pytest.mark.timeout(seconds))
                break


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)  # the session's Airflow home: nothing in it outlives the run


@pytest.fixture(scope="session")
def sluice_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def airflow_db(sluice_home: Path) -> Path:
    """A migrated SQLite metadata DB for this session (about 3 s, once)."""
    embedded.migrate()
    return sluice_home / "airflow" / "airflow.db"


@pytest.fixture(scope="session")
def demo_data(sluice_home: Path) -> Path:
    from sluice import demo

    directory = sluice_home / "demo-data"
    demo.prepare("ml_training_pipeline", demo.declared(REPO / "dags" / "ml_training_pipeline.py"), directory)
    return directory


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    return REPO / "dags"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[dict[str, object]]:
    """A PostgreSQL server for the session (``tests.support.postgres``: the running one, else a throwaway)."""
    from tests.support.postgres import postgres_server

    with postgres_server() as server:
        yield server
