"""A task's start counts as its first heartbeat; later heartbeats still come once per interval.

Airflow's own task supervisor (ActivitySubprocess: the start request, the fork, the select loop, the
heartbeats) supervises a real child process that logs a line (what wakes the supervisor's loop, as a task's
first message does) and exits. The Execution API's answers are canned here, recorded per request: the real
API server needs a queued task instance in a metadata DB, and the stack test
(tests/integration/stack/test_stack_pipeline.py) counts the real server's heartbeat requests per task.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType

import httpx
import pytest
from sluice.worker import start_heartbeat

from tests.worker.switches import switched_on


@pytest.fixture
def start_is_heartbeat(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    yield from switched_on(start_heartbeat, monkeypatch)


def supervise(lives: float, min_heartbeat_interval: float, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run one supervised child that lives ``lives`` seconds; the Execution API requests it caused, in order."""
    from airflow.sdk.api.client import Client
    from airflow.sdk.api.datamodels._generated import BundleInfo, DagRun, TaskInstance, TIRunContext
    from airflow.sdk.execution_time import supervisor

    monkeypatch.setattr(supervisor, "MIN_HEARTBEAT_INTERVAL", min_heartbeat_interval)
    now = datetime.now(UTC)
    run = DagRun(
        dag_id="d",
        run_id="r",
        logical_date=None,
        data_interval_start=None,
        data_interval_end=None,
        run_after=now,
        start_date=now,
        end_date=None,
        run_type="manual",
        state="running",
        consumed_asset_events=[],
        partition_key=None,
    )
    requests: list[str] = []

    def execution_api(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
        if request.url.path.endswith("/run"):
            return httpx.Response(200, json=TIRunContext(dag_run=run, max_tries=0).model_dump(mode="json"))
        return httpx.Response(204)

    def task() -> None:
        print("started", flush=True)  # wakes the supervisor's loop while the task runs, as its first message does
        time.sleep(lives)
        os._exit(0)

    ti = TaskInstance(
        id=uuid.uuid4(), task_id="t", dag_id="d", run_id="r", try_number=1, dag_version_id=uuid.uuid4(), map_index=-1
    )
    client = Client(base_url=None, dry_run=True, token="", transport=httpx.MockTransport(execution_api))
    bundle = BundleInfo(name="dags-folder", version=None)
    start = supervisor.ActivitySubprocess.start
    proc = start(what=ti, dag_rel_path="d.py", bundle_info=bundle, client=client, target=task)
    assert proc.wait() == 0
    return requests


def test_a_task_shorter_than_the_interval_sends_no_heartbeat(
    start_is_heartbeat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert supervise(lives=0.5, min_heartbeat_interval=60, monkeypatch=monkeypatch) == ["PATCH run"]


def test_without_the_setting_airflow_heartbeats_right_after_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(start_heartbeat.ENV, raising=False)
    assert not start_heartbeat.install()
    assert supervise(lives=0.5, min_heartbeat_interval=60, monkeypatch=monkeypatch) == ["PATCH run", "PUT heartbeat"]


def test_a_task_longer_than_the_interval_still_heartbeats(
    start_is_heartbeat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = supervise(lives=2.0, min_heartbeat_interval=0.2, monkeypatch=monkeypatch)
    assert requests[0] == "PATCH run"
    assert requests.count("PUT heartbeat") >= 2, requests


def test_supervisors_start_tasks_through_the_switch_once_installed(start_is_heartbeat: ModuleType) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    assert ActivitySubprocess._on_child_started is start_is_heartbeat._on_child_started


def test_a_failed_start_leaves_the_heartbeat_clock_alone(
    start_is_heartbeat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Supervisor:
        _last_successful_heartbeat = 0.0
        _last_heartbeat_attempt = 0.0

    def refused(self: Supervisor, **_: object) -> None:
        raise RuntimeError("the API server refused the start")

    monkeypatch.setattr(start_heartbeat.PATCH, "original", refused)
    supervisor = Supervisor()
    with pytest.raises(RuntimeError, match="refused"):
        start_heartbeat._on_child_started(supervisor, ti=None)
    assert supervisor._last_heartbeat_attempt == 0.0


def test_a_setting_that_is_not_a_boolean_names_the_chart_value() -> None:
    with pytest.raises(ValueError, match=r"SLUICE_WORKER_START_HEARTBEAT='often'.*tuning\.workerStartHeartbeat"):
        start_heartbeat.enabled("often")
