"""Fault trials on a real local stack, counted by what each try writes (``probe_ledger``: its pid and start,
whether an earlier try of the same task was still alive, its end): no task lost, none run to the end twice, no
two tries of one task at once. bench/faults.py repeats these trials and prints the figures."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stack.conftest import RUN_BOUND, Running, started_stack
from tests.integration.stack.ledger import read_ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def trial_stack(pg_server, stack_dags: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A stack of its own: the last trial stops it with `sluice down`."""
    home = tmp_path_factory.mktemp("trial-stack") / "stack"
    with started_stack(pg_server, stack_dags, home, autoscale=False, probes=("probe_ledger",)) as running:
        yield running


def busy_worker(stack: Running, run_id: str, tasks: int, ledger: Path) -> str:
    """The worker running the most of the run's tasks, once every task is at work (it wrote its start: a try killed
    before that would go uncounted by the overlap check)."""

    def all_running() -> list[dict] | None:
        if len(list(ledger.glob("*.jsonl"))) < tasks:
            return None
        running = [t for t in stack.api.task_instances("probe_ledger", run_id) if t["state"] == "running"]
        return running if len([t for t in running if t["task_id"] == "work"]) == tasks else None

    running = stack.wait_for(all_running, f"{tasks} tasks running")
    hosts = [t["hostname"] for t in running if t["task_id"] == "work"]
    return max(set(hosts), key=hosts.count)


def test_sigkill_of_a_busy_worker_loses_nothing_and_runs_nothing_twice(trial_stack: Running, tmp_path: Path) -> None:
    seconds = [12.0, 12.0, 12.0]
    run_id = trial_stack.api.trigger("probe_ledger", {"seconds": seconds, "ledger": str(tmp_path)})
    worker = busy_worker(trial_stack, run_id, len(seconds), tmp_path)
    proc = trial_stack.worker_proc(worker)
    os.killpg(proc.pid, signal.SIGKILL)  # its main process and its pool; its task processes lead groups of their own
    assert trial_stack.api.wait_for_run("probe_ledger", run_id, RUN_BOUND)["state"] == "success"
    ledger = read_ledger(tmp_path, len(seconds))
    assert ledger.tries > len(seconds), "the killed tries were retried"
    assert (ledger.lost, ledger.duplicated, ledger.overlapped) == (0, 0, 0), ledger


def test_down_lets_the_tasks_of_a_restarted_worker_finish(trial_stack: Running, tmp_path: Path) -> None:
    """The supervisor's restart makes the worker its child; `sluice down` stops the supervisor first and must not
    take that worker's running tasks with it (it did: WorkerLostError, SIGKILL). Last in this module: it stops the
    stack."""

    def default_workers() -> list:
        return [p for p in trial_stack.stack.state().workers() if p.worker_name.startswith("default-")]

    (old,) = default_workers()
    os.killpg(old.pid, signal.SIGKILL)  # idle: nothing is lost; the supervisor starts a new worker of its pool
    trial_stack.wait_for(
        lambda: any(p.alive() and p.pid != old.pid for p in default_workers()), "the supervisor to restart the worker"
    )
    trial_stack.stack.wait_healthy()
    seconds = [10.0, 10.0]
    run_id = trial_stack.api.trigger("probe_ledger", {"seconds": seconds, "ledger": str(tmp_path)})
    busy_worker(trial_stack, run_id, len(seconds), tmp_path)
    started = time.monotonic()
    outcomes = dict(trial_stack.stack.down())
    assert time.monotonic() - started >= 5, "down waited for the running tasks"
    ledger = read_ledger(tmp_path, len(seconds))
    assert (ledger.lost, ledger.duplicated, ledger.overlapped) == (0, 0, 0), (ledger, outcomes)
    assert ledger.tries == len(seconds), "each task ran once, to its end"
