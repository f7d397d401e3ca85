"""`sluice status` says which Sluice patches each running worker has, from the report the worker wrote at start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
from sluice.stack.commands import patch_lines
from sluice.stack.config import StackConfig
from sluice.stack.local import LocalStack
from sluice.stack.processes import Proc, Worker
from sluice.stack.status import HEALTHY, ComponentStatus, Status
from sluice.worker import report
from sluice.worker.report import Patched, PatchState

ACTIVE = {"dag-cache": "active", "exit-wakeup": "active", "start-heartbeat": "active"}


def this_process_as_worker(name: str) -> Proc:
    me = psutil.Process()
    worker = Worker(name, "default", 8793, 60.0)
    return Proc(f"worker {name}", "worker", me.pid, me.create_time(), "worker.log", worker=worker)


def typed(states: dict[str, str]) -> dict[str, PatchState]:
    return {name: PatchState.parse(state) for name, state in states.items()}


def test_a_running_workers_report_is_read(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    stack.patch_report("default-1").parent.mkdir(parents=True)
    report.write(ACTIVE, "3.3.2", str(stack.patch_report("default-1")))
    assert stack.worker_patches(this_process_as_worker("default-1")) == typed(ACTIVE)


def test_a_report_left_by_an_earlier_worker_of_that_name_is_not_shown(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    path = stack.patch_report("default-1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": os.getpid() + 100_000, "airflow": "3.3.2", "patches": ACTIVE}))
    assert stack.worker_patches(this_process_as_worker("default-1")) is None


def status(*workers: tuple[str, dict[str, str] | None]) -> Status:
    components = [
        ComponentStatus(f"worker {name}", "worker", 1, True, HEALTHY, "log", patches=typed(p) if p else None)
        for name, p in workers
    ]
    return Status(StackConfig(), components, [])


def test_workers_with_the_same_patches_share_one_line() -> None:
    lines = patch_lines(status(("default-1", ACTIVE), ("gpu-1", ACTIVE)))
    assert lines == ["worker patches (default-1, gpu-1): dag-cache active, exit-wakeup active, start-heartbeat active"]


def test_a_patch_not_installed_is_shown_with_why_and_a_starting_worker_as_not_reported() -> None:
    why = "apache-airflow-task-sdk 1.4.0 is outside the range Sluice was tested on ([tested] 1.3.2)"
    stock = {**ACTIVE, "start-heartbeat": f"not installed: {why}"}
    lines = patch_lines(status(("default-1", stock), ("gpu-1", None)))
    assert lines[0] == (
        "worker patches (default-1): dag-cache active, exit-wakeup active, "
        rf"start-heartbeat [yellow]not installed[/] ({why.replace('[tested]', chr(92) + '[tested]')})"
    )
    assert lines[1] == "worker patches (gpu-1): [yellow]not reported yet[/] (the worker is starting)"


def test_patch_states_read_back_as_written() -> None:
    """A patch's state is text in the report and the worker's log line ("not installed: why"); read back, typed."""
    why = "exit-wakeup: os.pidfd_open is missing: needs Linux 5.3"  # a reason may hold the separator itself
    for text, expected in [
        ("active", PatchState(Patched.ACTIVE)),
        ("off", PatchState(Patched.OFF)),
        (f"not installed: {why}", PatchState(Patched.NOT_INSTALLED, why)),
    ]:
        assert PatchState.parse(text) == expected and str(expected) == text
    assert PatchState.parse("sideways") == PatchState(Patched.NOT_INSTALLED, "unknown state 'sideways'")


def test_a_report_that_is_not_one_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    for text in ("{", "[]", json.dumps({"patches": ACTIVE}), json.dumps({"pid": "1", "patches": ACTIVE})):
        path.write_text(text)
        assert report.load(path) is None, text
    assert report.load(tmp_path / "missing.json") is None
