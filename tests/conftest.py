"""Test session set-up: an isolated embedded Airflow (own SLUICE_HOME, SQLite DB) per pytest session.

The environment must be set before anything imports Airflow, hence at conftest import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
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
