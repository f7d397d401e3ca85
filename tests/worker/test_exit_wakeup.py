"""A task supervisor whose task process has closed its sockets wakes when the process exits, not a timeout later.

Airflow's own supervisor machinery (WatchedSubprocess: the fork, the socket handlers, the select loop and the
reaping) runs a real child process; only the Execution API client is absent, as the base class needs none.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from sluice.worker import exit_wakeup

from tests.worker.switches import switched_on

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


def test_supervisors_monitor_with_the_watch_once_installed(wakeup: ModuleType) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    assert ActivitySubprocess._monitor_subprocess is wakeup._monitor_subprocess


def test_without_the_setting_the_supervisor_is_airflows_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    monkeypatch.delenv(exit_wakeup.ENV, raising=False)
    before = ActivitySubprocess._monitor_subprocess
    assert not exit_wakeup.install()
    assert ActivitySubprocess._monitor_subprocess is before is not exit_wakeup._monitor_subprocess


def test_a_process_already_reaped_gets_no_watch() -> None:
    class Gone:
        pid = 2**22 + 12345  # above any pid_max default: no such process
        selector = None

    assert exit_wakeup.watch_exit(Gone()) is None


def test_a_setting_that_is_not_a_boolean_names_the_chart_value() -> None:
    with pytest.raises(ValueError, match=r"SLUICE_WORKER_EXIT_WAKEUP='maybe'.*tuning\.workerExitWakeup"):
        exit_wakeup.enabled("maybe")
