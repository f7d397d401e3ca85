"""A task supervisor whose task process has closed its sockets wakes when the process exits, not a timeout later.

Airflow's own supervisor machinery (WatchedSubprocess: the fork, the socket handlers, the select loop and the
reaping) runs a real child process; only the Execution API client is absent, as the base class needs none.
``ActivitySubprocess.wait()`` (tests/worker/supervised.py) reaches the installed switch as a worker's does.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from sluice.worker import exit_wakeup, patches

from tests.worker import supervised
from tests.worker.switches import switched_on

EXIT_WAKEUP = next(patch for patch in patches.PATCHES if patch.module is exit_wakeup)

# How long one select() may sleep here: far longer than the test takes when the wake-up works, so a missing
# wake-up shows up as the watch never firing (asserted), not as a timing.
LONG_WAIT = 120.0


@pytest.fixture
def wakeup(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    yield from switched_on(exit_wakeup, monkeypatch)


@pytest.fixture
def silent_child() -> Iterator[tuple[Any, int]]:
    """A supervised child that has closed every socket to its supervisor and exits when told to."""
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    gate, release = os.pipe()

    def target() -> None:
        os.closerange(0, gate)  # what a task process does on its way out: its supervisor sockets close first
        os.closerange(gate + 1, 4096)
        os.read(gate, 1)
        os._exit(0)

    proc = WatchedSubprocess.start(target=target, id=uuid.uuid4())
    os.close(gate)
    for _ in range(100):  # read the sockets' EOFs, as the supervisor's loop does
        if not proc._open_sockets:
            break
        proc._service_subprocess(max_wait_time=0.5)
    assert not proc._open_sockets
    assert proc._exit_code is None, "the child must still be running, waiting for its release"
    try:
        yield proc, release
    finally:
        os.close(release)
        proc.selector.close()


def test_the_supervisor_wakes_when_its_silent_task_process_exits(silent_child: tuple[Any, int]) -> None:
    proc, release = silent_child
    watch = exit_wakeup.watch_exit(proc)
    assert watch is not None, "Linux pidfds are available on every machine Sluice's workers run on"
    os.write(release, b"x")
    assert proc._service_subprocess(max_wait_time=LONG_WAIT) == 0
    assert watch.fd is None, "the process exit, not the select timeout, ended the wait"
    assert not proc.selector.get_map(), "the watch left the selector as the supervisor's sockets do"


def test_the_watch_is_closed_when_monitoring_ends_without_it_firing(
    silent_child: tuple[Any, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, _ = silent_child
    watches: list[Any] = []

    def original_monitor(self: Any) -> None:
        watches.extend(key.fileobj for key in self.selector.get_map().values())
        raise RuntimeError("the supervisor's loop failed")

    monkeypatch.setattr(exit_wakeup.PATCH, "original", original_monitor)  # stands in for Airflow's loop
    with pytest.raises(RuntimeError):
        exit_wakeup._monitor_subprocess(proc)
    assert [type(watch) for watch in watches] == [exit_wakeup.ExitWatch]
    assert watches[0].fd is None
    assert not proc.selector.get_map()


def closes_its_sockets_then_exits() -> None:
    """A task process on its way out: its supervisor sockets close first, the process exits a moment later."""
    print("started", flush=True)
    os.closerange(0, 4096)
    time.sleep(0.5)
    os._exit(0)


def test_wait_reaps_a_task_process_that_closed_its_sockets_as_it_exits(
    wakeup: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's ``ActivitySubprocess.wait()`` runs the installed switch; with an hour between selects (as if the
    interval were that long), only the pidfd can end the wait."""
    watches: list[Any] = []
    watch_exit = exit_wakeup.watch_exit

    def recorded(supervisor: Any) -> Any:
        watches.append(watch_exit(supervisor))
        return watches[-1]

    monkeypatch.setattr(exit_wakeup, "watch_exit", recorded)
    with supervised.bounded(60, "the supervisor slept out its select() instead of waking at the exit"):
        exit_code, _ = supervised.supervise(closes_its_sockets_then_exits, monkeypatch, 3600, heartbeat_timeout=7200)
    assert exit_code == 0
    assert len(watches) == 1 and watches[0] is not None and watches[0].fd is None


def test_without_the_setting_the_supervisor_is_airflows_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    monkeypatch.delenv(exit_wakeup.ENV, raising=False)
    before = ActivitySubprocess._monitor_subprocess
    assert patches.install(EXIT_WAKEUP) == patches.OFF
    assert ActivitySubprocess._monitor_subprocess is before is not exit_wakeup._monitor_subprocess


def test_where_pidfds_do_not_exist_the_switch_stays_out_and_tasks_are_supervised_as_stock(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    monkeypatch.setenv(exit_wakeup.ENV, "true")
    # A Python without os.pidfd_open (not Linux), as the switch sees it; psutil, which Airflow uses, keeps its own.
    monkeypatch.setattr(exit_wakeup, "os", SimpleNamespace(getpid=os.getpid, close=os.close))
    before = ActivitySubprocess._monitor_subprocess
    try:
        with caplog.at_level(logging.WARNING):
            state = patches.install(EXIT_WAKEUP)
        assert state.startswith(patches.NOT_INSTALLED) and "os.pidfd_open" in state
        assert ActivitySubprocess._monitor_subprocess is before
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "exit-wakeup" in warnings[0], warnings

        def exits() -> None:
            os._exit(0)

        assert supervised.supervise(exits, monkeypatch, 1)[0] == 0, "Airflow's own loop supervises the task"
    finally:
        exit_wakeup.uninstall()


def test_without_the_supervisor_loop_it_replaces_the_switch_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    monkeypatch.setenv(exit_wakeup.ENV, "true")
    monkeypatch.delattr(ActivitySubprocess, "_monitor_subprocess")
    try:
        with caplog.at_level(logging.WARNING):
            state = patches.install(EXIT_WAKEUP)
        assert state.startswith(patches.NOT_INSTALLED) and "_monitor_subprocess" in state
        assert exit_wakeup.PATCH.original is None and not hasattr(ActivitySubprocess, "_monitor_subprocess")
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    finally:
        exit_wakeup.uninstall()


def test_a_process_already_reaped_gets_no_watch() -> None:
    class Gone:
        pid = 2**22 + 12345  # above any pid_max default: no such process
        selector = None

    assert exit_wakeup.watch_exit(Gone()) is None


def test_a_setting_that_is_not_a_boolean_names_the_chart_value() -> None:
    with pytest.raises(ValueError, match=r"SLUICE_WORKER_EXIT_WAKEUP='maybe'.*tuning\.workerExitWakeup"):
        exit_wakeup.enabled("maybe")
