"""`sluice status` on a stack whose broker or components failed: it names what failed and exits 1.

Real processes stand in for the components (a sleeping Python process recorded as a worker or the scheduler), the
broker is a real ``redis-server`` started and stopped on a free port, and the metadata database is a port where
nothing listens: ``LocalStack.status`` runs its real code path (Redis PING, Celery ping, database queries).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sluice.cli import app
from sluice.stack import services
from sluice.stack.config import StackConfig
from sluice.stack.local import LocalStack
from sluice.stack.processes import Proc, Worker, spawn, stop
from sluice.stack.state import StackState, StateFile
from sluice.stack.status import DEAD, ComponentHealth, Health
from typer.testing import CliRunner

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def nowhere() -> str:
    """A PostgreSQL URL where nothing listens."""
    return f"postgresql+psycopg2://postgres@127.0.0.1:{services.free_port()}/sluice"


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        stop(proc, signal.SIGKILL, timeout=5)


def make_stack(home: Path, broker_url: str, procs: list[Proc]) -> LocalStack:
    home.mkdir(parents=True, exist_ok=True)
    StateFile(home).write(StackState(config=StackConfig(broker_url=broker_url, db_url=nowhere()), procs=procs))
    return LocalStack(home)


def a_worker(tmp_path: Path, procs: list[Proc]) -> Proc:
    identity = Worker("default-1", "default", services.free_port(), 60.0)
    worker = spawn("worker default-1", "worker", SLEEPER, {}, tmp_path / "worker.log", worker=identity)
    procs.append(worker)
    return worker


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_broker_that_stops_answering_is_named_and_status_exits_1(tmp_path: Path, procs: list[Proc]) -> None:
    redis = services.start_redis(tmp_path / "redis", services.free_port(), dict(os.environ))
    assert redis.proc is not None
    procs.append(redis.proc)
    stack = make_stack(tmp_path / "stack", redis.url, [a_worker(tmp_path, procs)])

    answering = stack.status()
    assert answering.broker_problem is None
    assert [str(c.health) for c in answering.components] == ["starting: no ping reply yet"]

    stop(redis.proc, signal.SIGKILL, timeout=10)
    down = stack.status()
    assert down.broker_problem is not None and redis.url in down.broker_problem
    assert "workers cannot be reached through it" in down.broker_problem
    (worker,) = down.components
    assert worker.health == ComponentHealth(Health.WAITING, "on the broker, which does not answer"), worker.health
    assert not down.healthy

    result = CliRunner().invoke(app, ["status", "--home", str(stack.home)], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if redis.url in line]
    assert len(lines) == 1 and "does not answer" in lines[0] and "workers cannot be reached" in lines[0], lines
    assert "starting: no ping reply yet" not in result.output


def test_the_broker_url_is_shown_without_its_password(tmp_path: Path, procs: list[Proc]) -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{services.free_port()}/0"
    status = make_stack(tmp_path / "stack", url, [a_worker(tmp_path, procs)]).status()
    assert status.broker_problem is not None and "127.0.0.1" in status.broker_problem
    assert "s3cret-pass" not in status.broker_problem
    assert not status.healthy


def test_last_exit_names_the_signal_a_component_died_of(tmp_path: Path, procs: list[Proc]) -> None:
    """Where this process started the component (``sluice up`` during start-up; the test here), its exit status is
    known: the status says which signal killed it, or its exit code, and keeps it in the stack's record."""
    killed = spawn("scheduler", "scheduler", SLEEPER, {}, tmp_path / "scheduler.log")
    failed = spawn("triggerer", "triggerer", [sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "t.log")
    procs += [killed, failed]
    stack = make_stack(tmp_path / "stack", f"redis://127.0.0.1:{services.free_port()}/0", [killed, failed])
    os.kill(killed.pid, signal.SIGKILL)
    for proc in (killed, failed):
        wait_ended(proc.pid)
    by_name = {c.name: c for c in stack.status().components}
    assert by_name["scheduler"].health == DEAD and by_name["scheduler"].last_exit == "killed by SIGKILL"
    assert by_name["triggerer"].last_exit == "exit code 3"
    again = {c.name: c.last_exit for c in LocalStack(stack.home).status().components}  # recorded: known from now on
    assert again == {"scheduler": "killed by SIGKILL", "triggerer": "exit code 3"}


def wait_ended(pid: int) -> None:
    """Until the process is a zombie: ended, its exit status not collected yet."""
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the process did not end"
        time.sleep(0.05)


def test_a_metadata_database_that_does_not_answer_is_named_not_a_traceback(tmp_path: Path, procs: list[Proc]) -> None:
    stack = make_stack(tmp_path / "stack", f"redis://127.0.0.1:{services.free_port()}/0", [a_worker(tmp_path, procs)])
    status = stack.status()
    assert status.database_problem is not None and "metadata database" in status.database_problem
    assert status.config.db_url in status.database_problem  # no password in this URL: shown as it is
    result = CliRunner().invoke(app, ["status", "--home", str(stack.home)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "does not answer" in result.output and "Traceback" not in result.output
