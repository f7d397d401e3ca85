"""What `sluice status` prints for each component: its health as one phrase ("starting: no ping reply yet"), and a
last exit that quotes a log line printed as the log has it (brackets in it are not taken for markup)."""

from __future__ import annotations

import pytest
from sluice.stack import commands
from sluice.stack.config import StackConfig
from sluice.stack.faults import ImportFailure, TaskEvent
from sluice.stack.status import DEAD, HEALTHY, ComponentHealth, ComponentStatus, Health, Status


def test_health_and_last_exit_print_as_they_read(capsys: pytest.CaptureFixture[str]) -> None:
    said = "12:00:01 default-1 exit code 1; its log ends: [error] [/tmp/x] boom"
    components = [
        ComponentStatus("scheduler", "scheduler", 11, True, HEALTHY, "scheduler.log"),
        ComponentStatus("triggerer", "triggerer", 12, True, ComponentHealth(Health.STARTING), "triggerer.log"),
        ComponentStatus(
            "worker default-2",
            "worker",
            13,
            True,
            ComponentHealth(Health.STARTING, "no ping reply yet"),
            "w.log",
            restarts=1,
            last_exit=said,
        ),
        ComponentStatus("redis", "redis", 14, False, DEAD, "redis.log", last_exit="killed by SIGKILL"),
    ]
    events = [TaskEvent("12:00:02", "heartbeat timeout", "d.t try 1", "manual__1", "Task [x] did not heartbeat")]
    failures = [ImportFailure("broken.py:3", "SyntaxError: [bad] syntax")]
    commands._print_status(Status(StackConfig(), components, [], failures, events))
    out = capsys.readouterr().out
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in out.splitlines()
        if line.startswith("│") and line.split("│")[1].strip() in {c.name for c in components}
    }
    assert rows["scheduler"][1] == "healthy" and rows["triggerer"][1] == "starting"
    assert rows["worker default-2"][1:3] == ["starting: no ping reply yet", "1"]
    assert rows["redis"][1:3] == ["dead", ""] and rows["redis"][3] == "killed by SIGKILL"
    assert said in " ".join(out.split()), out
    assert "Task [x] did not heartbeat" in out and "SyntaxError: [bad] syntax" in out, out
