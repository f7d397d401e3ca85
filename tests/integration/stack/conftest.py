"""One real local stack for the whole directory: Airflow 3 components, PostgreSQL, Redis, Celery workers.

Nothing is mocked. The stack gets its own database on the test PostgreSQL, its own throwaway Redis on a
free port (started by the stack itself, which the fault tests restart) and its own API port, so runs
never collide with each other or with services already on this machine.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sluice.stack.config import StackConfig
from sluice.stack.local import LocalStack
from sluice.stack.processes import Proc
from sluice.stack.services import free_port

from tests.support.airflow_api import AdminApi
from tests.support.postgres import fresh_database

HERE = Path(__file__).parent
REPO = HERE.parents[2]
# Bounds (seconds) every wait below gives up at; a task lost by a fault shows up as a timeout naming it.
RUN_BOUND = 300
# Recovery timeouts short enough for tests; docs/operations.md gives the stack's and the chart's own.
TEST_RECOVERY = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    # The live scheduler heartbeats every 2 s, not 5, so a loop slowed by a busy 2-core machine does not
    # look dead against that short threshold (`sluice status` once reported it unhealthy for a moment).
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
}


@dataclass
class Running:
    stack: LocalStack
    api: AdminApi
    db_url: str
    up_seconds: float

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = RUN_BOUND) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def run(self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = RUN_BOUND) -> tuple[str, dict]:
        run_id = self.api.trigger(dag_id, conf)
        return run_id, self.api.wait_for_run(dag_id, run_id, timeout)

    def running_ti(self, dag_id: str, run_id: str, task_id: str | None = None) -> dict[str, Any] | None:
        for ti in self.api.task_instances(dag_id, run_id):
            if ti["state"] == "running" and ti["hostname"] and (task_id is None or ti["task_id"] == task_id):
                return ti
        return None

    def worker_proc(self, worker: str) -> Proc:
        return next(p for p in self.stack.state().workers() if p.worker_name == worker)


@pytest.fixture(scope="session")
def stack_dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's example DAGs plus the probe DAGs, in one DAG folder."""
    folder = tmp_path_factory.mktemp("stack-dags")
    for source in [*sorted((REPO / "dags").glob("*.py")), *sorted((HERE / "dags").glob("*.py"))]:
        shutil.copy(source, folder / source.name)
    return folder


@contextlib.contextmanager
def started_stack(
    pg_server, dags: Path, home: Path, autoscale: bool, probes: tuple[str, ...], launcher: str = "local"
) -> Iterator[Running]:
    """A stack on its own database and a throwaway Redis, with ``probes`` parsed and unpaused; stopped after."""
    with fresh_database(pg_server, "sluice_stack") as db_url:
        stack = LocalStack(home)
        config = StackConfig(
            db_url=db_url,
            broker_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing answers: the stack starts its own
            dags_folder=str(dags),
            platform_file=str(HERE / "platform.yaml"),
            api_port=free_port(),
            autoscale=autoscale,
            airflow_env=TEST_RECOVERY,
            launcher=launcher,
        )
        started = time.monotonic()
        try:
            stack.up(config, progress=print)
            up_seconds = time.monotonic() - started
            print(f"local stack healthy in {up_seconds:.1f} s")
            api = AdminApi(config.api_url, "admin", stack.secrets().admin_password)
            for dag_id in probes:
                api.wait_for_dag(dag_id)
                api.unpause(dag_id)
            yield Running(stack, api, db_url, up_seconds)
        finally:
            outcomes = stack.down(progress=print)
            print("down:", outcomes)
            leftovers = [p.name for p in stack.state().procs if p.alive()] if stack.state_file.exists() else []
            assert not leftovers, f"sluice down left {leftovers} running"


@pytest.fixture(scope="package")
def local_stack(pg_server, stack_dags: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The autoscaled stack most tests share."""
    home = tmp_path_factory.mktemp("stack") / "stack"
    probes = ("probe_failure", "probe_sleep", "probe_chain", "probe_highmem")
    with started_stack(pg_server, stack_dags, home, autoscale=True, probes=probes) as running:
        yield running
