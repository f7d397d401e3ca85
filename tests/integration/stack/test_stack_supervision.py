"""`sluice up` without --autoscale supervises what it starts, and tells the truth about it (real stack).

A stack of its own (one worker per pool, no autoscaler): like a Deployment, it must start again any
component that dies, and every run must still end with each task terminal within the run bound. The
recovery timeouts are the tests' (``TEST_RECOVERY``: heartbeat 20 s, queued 120 s); docs/operations.md gives
the chart's and what each scenario costs with them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from sluice.stack.config import StackConfig
from sluice.stack.errors import StackError
from sluice.stack.local import LocalStack
from sluice.stack.processes import Proc
from sluice.stack.services import free_port
from sluice.stack.status import HEALTHY
from sluice.stack.workers import celery_hostname

from tests.integration.stack.conftest import HERE, RUN_BOUND, Running, started_stack

pytestmark = pytest.mark.integration
SLUICE = str(Path(sys.executable).with_name("sluice"))


@pytest.fixture(scope="module")
def plain_stack(pg_server, stack_dags: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    dags = tmp_path_factory.mktemp("plain-dags")
    shutil.copytree(stack_dags, dags, dirs_exist_ok=True)
    home = tmp_path_factory.mktemp("plain") / "stack"
    with started_stack(pg_server, dags, home, autoscale=False, probes=("probe_sleep", "probe_four")) as running:
        yield running


def _worker(stack: Running, pool: str = "default") -> Proc:
    return next(p for p in stack.stack.state().workers(pool) if p.alive())


def _restarted(stack: Running, old: Proc) -> Proc | None:
    """What the supervisor started in place of ``old``: the same component again, or for a worker a new
    worker of its pool that replaces it."""
    for proc in stack.stack.state().procs:
        replaces = proc.worker.replaces if proc.worker is not None else None
        same = proc.name == old.name or (old.worker is not None and replaces == old.worker.name)
        if same and proc.pid != old.pid and proc.alive():
            return proc
    return None


def _terminal(stack: Running, dag_id: str, run_id: str) -> dict[str, str]:
    run = stack.api.wait_for_run(dag_id, run_id, RUN_BOUND)
    states = {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in stack.api.task_instances(dag_id, run_id)}
    assert run["state"] == "success", states
    assert set(states.values()) == {"success"}, states
    return states


def test_a_worker_killed_with_its_group_mid_run_is_started_again(plain_stack: Running) -> None:
    """The issue's trial: SIGKILL to a worker's whole process group, no autoscaler to replace it."""
    run_id = plain_stack.api.trigger("probe_sleep", {"seconds": [8, 8]})
    plain_stack.wait_for(lambda: plain_stack.running_ti("probe_sleep", run_id, "nap"), "a nap running")
    worker = _worker(plain_stack)
    os.killpg(worker.pid, signal.SIGKILL)
    new = plain_stack.wait_for(lambda: _restarted(plain_stack, worker), "the worker restarted", 60)
    assert new.restarts == 1 and new.last_exit.split(" ", 2)[1] == worker.worker_name
    _terminal(plain_stack, "probe_sleep", run_id)
    status = plain_stack.stack.status()
    row = next(c for c in status.components if c.name == new.name)
    assert (row.restarts, row.health) == (1, HEALTHY)
    assert any(e.event == "heartbeat timeout" and "probe_sleep.nap" in e.task for e in status.events)


def test_a_killed_workers_children_do_not_outlive_it(plain_stack: Running) -> None:
    """SIGKILL to the main process alone: its log server and helpers must not keep a port and a DB session."""
    worker = _worker(plain_stack)
    children = psutil.Process(worker.pid).children(recursive=True)
    assert children, "a Celery worker has children (its pool, its log server)"
    os.kill(worker.pid, signal.SIGKILL)
    plain_stack.wait_for(lambda: _restarted(plain_stack, worker), "the worker restarted", 60)
    alive = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"children of the killed worker still running: {alive}"
    run_id = plain_stack.api.trigger("probe_four")
    _terminal(plain_stack, "probe_four", run_id)


def test_tasks_a_dead_worker_had_taken_but_not_started_run_after_the_queued_timeout(plain_stack: Running) -> None:
    """The worker takes tasks (its pool processes are stopped, so none starts), then dies: the messages it held
    are lost until Redis's visibility timeout, and Airflow re-queues the `queued` tasks after its queued
    timeout instead. The run still ends, within that bound."""
    worker = _worker(plain_stack)
    pool_processes = psutil.Process(worker.pid).children()
    for child in pool_processes:
        child.suspend()
    run_id = plain_stack.api.trigger("probe_four")
    node = celery_hostname(worker.worker_name)
    inspect = plain_stack.stack.celery().control.inspect(destination=[node], timeout=1)

    def taken() -> int:
        held = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
        return sum(len(tasks) for tasks in held)

    plain_stack.wait_for(lambda: taken() >= 1, "the worker to take the tasks", 60)
    states = {t["state"] for t in plain_stack.api.task_instances("probe_four", run_id)}
    assert "running" not in states and "success" not in states, states
    os.killpg(worker.pid, signal.SIGKILL)
    started = time.monotonic()
    _terminal(plain_stack, "probe_four", run_id)
    print(f"tasks held by the dead worker ran {time.monotonic() - started:.0f} s after the kill")
    events = plain_stack.stack.status().events
    assert any(e.event == "stuck in queued reschedule" and "probe_four" in e.task for e in events), events


def _waiting_messages(broker: redis.Redis) -> list[str]:
    """The Celery task ids of the messages waiting in the broker's queues (kombu keeps each queue as a list)."""
    return [
        json.loads(raw)["headers"]["id"]
        for key in broker.scan_iter()
        if broker.type(key) == b"list"
        for raw in broker.lrange(key, 0, -1)
    ]


def _in_append_only_file(data_dir: Path, task_ids: list[str]) -> bool:
    """Whether Redis has written these messages to its append-only file: written is what survives a SIGKILL (the
    file's pages outlive the process; ``appendfsync everysec`` only bounds what a machine crash loses)."""
    written = b"".join(part.read_bytes() for part in data_dir.rglob("*.aof"))
    return all(task_id.encode() in written for task_id in task_ids)


def test_a_redis_killed_with_messages_waiting_is_restarted_and_loses_none(plain_stack: Running) -> None:
    redis_proc = plain_stack.stack.state().find("redis")
    assert redis_proc is not None and redis_proc.port is not None
    broker = redis.Redis(port=redis_proc.port)
    run_id = plain_stack.api.trigger("probe_sleep", {"seconds": [5] * 10})  # 4 run, 6 wait in Redis
    waiting = plain_stack.wait_for(
        lambda: (ids := _waiting_messages(broker)) and len(ids) >= 4 and ids, "4 messages waiting in Redis"
    )
    plain_stack.wait_for(
        lambda: _in_append_only_file(Path(redis_proc.log).parent / "redis", waiting),
        "Redis to write the waiting messages to its append-only file",
        30,
    )
    broker.close()
    os.killpg(redis_proc.pid, signal.SIGKILL)
    plain_stack.wait_for(lambda: _restarted(plain_stack, redis_proc), "Redis restarted", 60)
    _terminal(plain_stack, "probe_sleep", run_id)
    # Lost messages would still end the run, but only once the scheduler re-queues their tasks (queued timeout).
    requeued = [e for e in plain_stack.stack.status().events if e.run == run_id and "stuck in queued" in e.event]
    assert requeued == [], f"messages waiting in Redis were lost with it: {requeued}"


def test_status_shows_a_dag_file_that_does_not_import(plain_stack: Running) -> None:
    broken = Path(plain_stack.stack.state().config.dags_folder) / "broken_probe.py"
    broken.write_text("from airflow.sdk import DAG\n\ndef broken(:\n    pass\n")
    try:
        errors = plain_stack.wait_for(
            lambda: [e for e in plain_stack.stack.status().import_errors if "broken_probe.py" in e.where],
            "the import error to reach `sluice status`",
            90,
        )
        assert "SyntaxError" in errors[0].error, errors
        out = subprocess.run(
            [SLUICE, "status", "--home", str(plain_stack.stack.home)], capture_output=True, text=True, timeout=120
        )
        assert "DAG files that do not import" in out.stdout and "broken_probe.py" in out.stdout, out.stdout
    finally:
        broken.unlink()


def test_status_after_down_says_stopped_and_exits_1(plain_stack: Running) -> None:
    home = str(plain_stack.stack.home)
    down = subprocess.run([SLUICE, "down", "--home", home], capture_output=True, text=True, timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    # Components the supervisor restarted are its children: they are stopped in their turn, not killed with it.
    assert "not running" not in down.stdout and "killed" not in down.stdout, down.stdout
    status = subprocess.run([SLUICE, "status", "--home", home], capture_output=True, text=True, timeout=120)
    assert status.returncode == 1
    assert "is stopped" in status.stdout


# ---- refused before anything starts ------------------------------------------------------------------
def _config(**overrides: object) -> StackConfig:
    settings: dict[str, object] = {"platform_file": str(HERE / "platform.yaml"), "api_port": free_port()}
    return StackConfig.model_validate(settings | overrides)


def test_up_refuses_a_port_something_else_answers(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = LocalStack(tmp_path / "stack")
        started = time.monotonic()
        with pytest.raises(StackError, match=f"port {port} on 127.0.0.1 is in use"):
            stack.up(_config(api_port=port))
    assert time.monotonic() - started < 10
    assert stack.running() == []


def test_up_refuses_an_explicit_database_url_that_answers_nothing(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://postgres:secret@127.0.0.1:{free_port()}/sluice"
    stack = LocalStack(tmp_path / "stack")
    with pytest.raises(StackError, match="no PostgreSQL answers at") as refused:
        stack.up(_config(db_url=url, fallback_db=False))
    assert "secret" not in str(refused.value)
    assert stack.running() == []


def test_the_cli_fails_naming_an_unreachable_db_url(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/sluice"
    env = {**os.environ, "SLUICE_PLATFORM_FILE": str(HERE / "platform.yaml")}
    out = subprocess.run(
        [SLUICE, "up", "--home", str(tmp_path / "stack"), "--db-url", url, "--api-port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 1
    assert "no PostgreSQL answers at" in out.stdout and "--db-url" in out.stdout, out.stdout
