"""Airflow's own task supervisor (``ActivitySubprocess``: the start request, the fork, ``wait()`` and its select
loop, the heartbeats) supervising a real child process that runs ``target`` instead of a task.

The Execution API's answers are canned, recorded per request: the real API server needs a queued task instance
in a metadata DB, and the stack test (tests/integration/stack/test_stack_pipeline.py) runs the real one.
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest


def running_dag_run(dag_id: str) -> Any:
    """The Execution API's model of a manual run ``r`` of ``dag_id``, running now."""
    from airflow.sdk.api.datamodels._generated import DagRun

    now = datetime.now(UTC)
    return DagRun(
        dag_id=dag_id,
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


def supervise(
    target: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
    min_heartbeat_interval: float,
    heartbeat_timeout: float | None = None,
) -> tuple[int, list[str]]:
    """Start ``target`` under ActivitySubprocess and ``wait()`` for it: its exit code and the API requests made."""
    from airflow.sdk.api.client import Client
    from airflow.sdk.api.datamodels._generated import BundleInfo, TaskInstance, TIRunContext
    from airflow.sdk.execution_time import supervisor

    monkeypatch.setattr(supervisor, "MIN_HEARTBEAT_INTERVAL", min_heartbeat_interval)
    if heartbeat_timeout is not None:
        monkeypatch.setattr(supervisor, "HEARTBEAT_TIMEOUT", heartbeat_timeout)
    run = running_dag_run("d")
    requests: list[str] = []

    def execution_api(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
        if request.url.path.endswith("/run"):
            return httpx.Response(200, json=TIRunContext(dag_run=run, max_tries=0).model_dump(mode="json"))
        return httpx.Response(204)

    ti = TaskInstance(
        id=uuid.uuid4(), task_id="t", dag_id="d", run_id="r", try_number=1, dag_version_id=uuid.uuid4(), map_index=-1
    )
    client = Client(base_url=None, dry_run=True, token="", transport=httpx.MockTransport(execution_api))
    bundle = BundleInfo(name="dags-folder", version=None)
    start = supervisor.ActivitySubprocess.start
    proc = start(what=ti, dag_rel_path="d.py", bundle_info=bundle, client=client, target=target)
    return proc.wait(), requests


@contextlib.contextmanager
def bounded(seconds: int, why: str) -> Iterator[None]:
    """Fail with ``why`` if the block is still running after ``seconds`` (SIGALRM interrupts a blocking select)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(why)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
