"""A task's start counts as its first heartbeat; later heartbeats still come once per interval.

Airflow's own task supervisor (ActivitySubprocess.start and wait(), tests/worker/supervised.py) supervises a
real child process that logs a line (what wakes the supervisor's loop, as a task's first message does) and
exits. The stack test (tests/integration/stack/test_stack_pipeline.py) counts the real API server's heartbeat
requests per task.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from types import ModuleType

import pytest
from sluice import compat
from sluice.worker import patches, start_heartbeat

from tests.worker import supervised
from tests.worker.switches import switched_on

START_HEARTBEAT = next(patch for patch in patches.PATCHES if patch.module is start_heartbeat)


@pytest.fixture
def start_is_heartbeat(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    yield from switched_on(start_heartbeat, monkeypatch)


def supervise(lives: float, min_heartbeat_interval: float, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run one supervised child that lives ``lives`` seconds; the Execution API requests it caused, in order."""

    def task() -> None:
        print("started", flush=True)  # wakes the supervisor's loop while the task runs, as its first message does
        time.sleep(lives)
        os._exit(0)

    exit_code, requests = supervised.supervise(task, monkeypatch, min_heartbeat_interval)
    assert exit_code == 0
    return requests


def test_a_task_shorter_than_the_interval_sends_no_heartbeat(
    start_is_heartbeat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert supervise(lives=0.5, min_heartbeat_interval=60, monkeypatch=monkeypatch) == ["PATCH run"]


def test_without_the_setting_airflow_heartbeats_right_after_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(start_heartbeat.ENV, raising=False)
    assert patches.install(START_HEARTBEAT) == patches.OFF
    assert supervise(lives=0.5, min_heartbeat_interval=60, monkeypatch=monkeypatch) == ["PATCH run", "PUT heartbeat"]


def test_on_an_untested_task_sdk_the_switch_stays_out_and_airflow_heartbeats_as_stock(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda d: "1.4.0" if d == "apache-airflow-task-sdk" else real(d))
    monkeypatch.setenv(start_heartbeat.ENV, "true")
    try:
        with caplog.at_level(logging.WARNING):
            state = patches.install(START_HEARTBEAT)
        assert state.startswith(patches.NOT_INSTALLED) and "apache-airflow-task-sdk 1.4.0" in state
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "start-heartbeat" in warnings[0], warnings
        requests = supervise(lives=0.5, min_heartbeat_interval=60, monkeypatch=monkeypatch)
        assert requests == ["PATCH run", "PUT heartbeat"], "Airflow's own start"
    finally:
        start_heartbeat.uninstall()


@pytest.mark.parametrize("name", ["_on_child_started", "_last_heartbeat_attempt", "_last_successful_heartbeat"])
def test_without_a_supervisor_symbol_it_relies_on_the_switch_is_not_installed(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    monkeypatch.setenv(start_heartbeat.ENV, "true")
    monkeypatch.delattr(ActivitySubprocess, name)
    try:
        with caplog.at_level(logging.WARNING):
            state = patches.install(START_HEARTBEAT)
        assert state.startswith(patches.NOT_INSTALLED) and name in state
        assert start_heartbeat.PATCH.original is None, "Airflow's class is left as it is"
        assert not hasattr(ActivitySubprocess, name)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "start-heartbeat" in warnings[0] and name in warnings[0], warnings
    finally:
        start_heartbeat.uninstall()


def test_a_task_longer_than_the_interval_still_heartbeats(
    start_is_heartbeat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = supervise(lives=2.0, min_heartbeat_interval=0.2, monkeypatch=monkeypatch)
    assert requests[0] == "PATCH run"
    assert requests.count("PUT heartbeat") >= 2, requests


def test_a_failed_start_leaves_the_heartbeat_clock_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not installed: uninstalling would put this test's ``refused`` on Airflow's class for the tests after it.
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
