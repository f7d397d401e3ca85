"""`sluice up` and `sluice demo --stack` say what happened and where to look, without a running stack."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from sluice.cli import app
from sluice.stack import services
from sluice.stack.config import StackConfig
from sluice.stack.errors import StackError
from sluice.stack.local import LocalStack
from sluice.stack.processes import Proc, spawn, stop
from sluice.stack.state import StackState, StateFile
from typer.testing import CliRunner

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STARTED_SO_FAR = "processes started so far keep running"


def flat(text: str) -> str:
    return " ".join(text.split())


def test_a_refused_up_that_started_nothing_does_not_say_processes_keep_running(tmp_path: Path) -> None:
    """A --db-url that answers nothing is refused before anything starts."""
    home = tmp_path / "stack"
    nowhere = f"postgresql+psycopg2://postgres@127.0.0.1:{services.free_port()}/sluice"
    args = ["up", "--home", str(home), "--db-url", nowhere, "--api-port", str(services.free_port())]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "no PostgreSQL answers at" in flat(result.output)
    assert STARTED_SO_FAR not in flat(result.output)
    assert LocalStack(home).running() == []


def test_a_refused_up_that_started_processes_names_them_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Proc] = []

    def fails_after_starting_postgres(self: LocalStack, config: StackConfig, progress: object = None) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        started.append(spawn("postgres", "postgres", SLEEPER, {}, self.home / "postgres.log"))
        StateFile(self.home).write(StackState(config=config, procs=started))
        raise StackError("`airflow db migrate` failed")

    monkeypatch.setattr(LocalStack, "up", fails_after_starting_postgres)
    try:
        result = CliRunner().invoke(app, ["up", "--home", str(tmp_path / "stack")])
    finally:
        for proc in started:
            stop(proc, signal.SIGKILL, timeout=5)
    output = flat(result.output)
    assert result.exit_code == 1, output
    assert f"{STARTED_SO_FAR} (postgres)" in output and "`sluice down" in output and "`sluice status" in output


def test_demo_on_the_stack_takes_home_and_names_where_it_looked(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["demo", "--stack", "--home", str(home)], env={"COLUMNS": "300"})
    output = flat(result.output)
    assert result.exit_code == 2, output
    assert f"no local stack in {home.resolve()}" in output
    assert "--home" in output and "SLUICE_STACK_HOME" in output


def test_demo_on_a_stopped_stack_names_its_home_and_both_ways_to_choose_another(tmp_path: Path) -> None:
    home = tmp_path / "stopped"
    home.mkdir()
    gone = Proc("scheduler", "scheduler", 999_999_999, 1.0, str(home / "scheduler.log"))
    StateFile(home).write(StackState(config=StackConfig(), procs=[gone]))
    result = CliRunner().invoke(app, ["demo", "--stack"], env={"SLUICE_STACK_HOME": str(home), "COLUMNS": "300"})
    output = flat(result.output)
    assert result.exit_code == 2, output
    assert f"the local stack in {home.resolve()} is not running" in output
    assert "--home" in output and "SLUICE_STACK_HOME" in output


def test_demo_home_without_stack_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["demo", "--home", "/nowhere"])
    assert result.exit_code == 2 and "--home" in flat(result.output) and "--stack" in flat(result.output)


def test_up_prints_how_to_get_a_rest_api_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The last lines of a successful `sluice up`: the UI, the login and the token endpoint for /api/v2."""
    from sluice.stack.commands import print_access

    home = tmp_path / "stack"
    home.mkdir()
    StateFile(home).write(StackState(config=StackConfig(api_port=18080)))
    stack = LocalStack(home)
    print_access(stack)
    output = flat(capsys.readouterr().out)
    password = stack.secrets().admin_password
    assert "POST http://127.0.0.1:18080/auth/token" in output
    assert f'{{"username": "admin", "password": "{password}"}}' in output
    assert "Authorization: Bearer" in output
