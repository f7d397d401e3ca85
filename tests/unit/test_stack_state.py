"""The stack's record (``<home>/stack.json``): typed, validated when read, and a record an earlier Sluice wrote
(format 1: each process's facts in an untyped ``extra`` map) still read, so that stack can be seen and stopped."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from sluice.cli import app
from sluice.stack.config import StackConfig
from sluice.stack.errors import StackError
from sluice.stack.local import LocalStack
from sluice.stack.processes import Kind, Proc, Stopping, Worker, spawn, stop
from sluice.stack.state import FORMAT, StackState, StateFile
from typer.testing import CliRunner

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def a_state(tmp_path: Path) -> StackState:
    worker = Proc(
        "worker default-2",
        Kind.WORKER,
        123,
        1.5,
        str(tmp_path / "w.log"),
        worker=Worker("default-2", "default", 8794, 30.0, replaces="default-1"),
        restarts=1,
        last_exit="12:00:00 default-1 killed by SIGKILL",
        stopping=Stopping.DRAIN,
    )
    redis = Proc("redis", Kind.REDIS, 124, 2.5, str(tmp_path / "r.log"), port=6390, exit_status="exit code 1")
    return StackState(StackConfig(api_port=18080), [worker, redis], {"default": 2})


def test_the_record_reads_back_as_written(tmp_path: Path) -> None:
    state = a_state(tmp_path)
    StateFile(tmp_path).write(state)
    assert StateFile(tmp_path).read() == state
    written = json.loads((tmp_path / "stack.json").read_text())
    assert written["format"] == FORMAT and "extra" not in written["procs"][0]
    assert written["procs"][0]["worker"]["pool"] == "default" and written["procs"][1]["port"] == 6390


def format_1(tmp_path: Path, worker: Proc) -> dict[str, object]:
    """A record as Sluice wrote it before the format was typed."""
    return {
        "config": StackConfig(api_port=18080).model_dump(),
        "procs": [
            {
                "name": worker.name,
                "kind": "worker",
                "pid": worker.pid,
                "create_time": worker.create_time,
                "log": worker.log,
                "extra": {
                    "pool": "default",
                    "worker": "default-3",
                    "log_server_port": 8795,
                    "grace": 5,
                    "replaces": "default-2",
                    "restarts": 2,
                    "last_exit": "12:00:00 default-2 exit code 1",
                },
            },
            {
                "name": "redis",
                "kind": "redis",
                "pid": 999_999_999,
                "create_time": 1.0,
                "log": str(tmp_path / "redis.log"),
                "extra": {"port": 6390, "draining": False, "exit_status": "killed by SIGKILL"},
            },
            {
                "name": "scheduler",
                "kind": "scheduler",
                "pid": 999_999_998,
                "create_time": 1.0,
                "log": str(tmp_path / "scheduler.log"),
                "extra": {"restarting": True},
            },
        ],
        "worker_serial": {"default": 3},
    }


def test_a_record_an_earlier_sluice_wrote_is_read_typed(tmp_path: Path) -> None:
    worker = Proc("worker default-3", "worker", 999_999_997, 1.0, str(tmp_path / "w.log"))
    (tmp_path / "stack.json").write_text(json.dumps(format_1(tmp_path, worker)))
    state = StateFile(tmp_path).read()
    (read_worker,) = state.workers("default")
    assert read_worker.worker == Worker("default-3", "default", 8795, 5.0, replaces="default-2")
    assert (read_worker.restarts, read_worker.last_exit) == (2, "12:00:00 default-2 exit code 1")
    redis, scheduler = state.find("redis"), state.find("scheduler")
    assert redis is not None and (redis.port, redis.exit_status, redis.stopping) == (6390, "killed by SIGKILL", None)
    assert scheduler is not None and scheduler.stopping is Stopping.RESTART
    assert state.worker_serial == {"default": 3} and state.config.api_port == 18080


def test_sluice_down_stops_a_stack_an_earlier_sluice_recorded(tmp_path: Path) -> None:
    """The point of reading the old format: the processes it names are found and stopped, and the record is then
    written in the current format."""
    home = tmp_path / "stack"
    worker = spawn("worker default-3", "worker", SLEEPER, {}, tmp_path / "w.log")
    try:
        home.mkdir()
        (home / "stack.json").write_text(json.dumps(format_1(tmp_path, worker)))
        assert [p.name for p in LocalStack(home).running()] == ["worker default-3"]
        result = CliRunner().invoke(app, ["down", "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert "worker default-3: stopped" in result.output
        assert not worker.alive()
        assert json.loads((home / "stack.json").read_text())["format"] == FORMAT
    finally:
        stop(worker, signal.SIGKILL, timeout=5)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "Expecting property name"),
        ("[]", "a JSON object expected"),
        (json.dumps({"format": 99, "config": {}}), "format 99"),
        (json.dumps({"format": FORMAT, "config": {}, "procs": [{"name": "x"}]}), "procs.0.kind: Field required"),
        (json.dumps({"config": {}, "procs": [{"name": "w", "kind": "worker", "extra": {}}]}), "missing 'worker'"),
    ],
)
def test_a_record_that_cannot_be_read_is_refused_with_what_to_do(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / "stack.json").write_text(text)
    with pytest.raises(StackError) as raised:
        StateFile(tmp_path).read()
    message = str(raised.value)
    assert str(tmp_path / "stack.json") in message and why in message, message
    assert "sluice down" in message and "remove the file" in message, message


@pytest.mark.parametrize("command", ["status", "down", "up"])
def test_the_commands_name_an_unreadable_record_not_a_traceback(tmp_path: Path, command: str) -> None:
    (tmp_path / "stack.json").write_text(json.dumps({"format": 99}))
    result = CliRunner().invoke(app, [command, "--home", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "cannot read the local stack's record" in result.output and "Traceback" not in result.output
