"""Fault tests on the real local stack: no task is lost when a worker, Redis or the scheduler dies.

Every run must end with each task in success (or failed with its reason) within the run bound
(``RUN_BOUND``, 300 s); a task stuck queued or running would surface as that timeout, naming its state.
Recovery relies on the timeouts in ``TEST_RECOVERY`` (docs/operations.md gives the chart's values).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.stack.conftest import RUN_BOUND, Running
from tests.support.stack import restart

pytestmark = pytest.mark.integration
KILLS = 3


def _running_nap(local_stack: Running, run_id: str, try_number: int = 1) -> dict | None:
    ti = local_stack.running_ti("probe_sleep", run_id, "nap")
    return ti if ti and ti["try_number"] == try_number else None


def _all_succeeded(local_stack: Running, dag_id: str, run_id: str) -> None:
    states = {(t["task_id"], t["map_index"]): t["state"] for t in local_stack.api.task_instances(dag_id, run_id)}
    assert set(states.values()) == {"success"}, states


def test_sigkill_of_the_worker_running_a_task_retries_it_on_another_worker(local_stack: Running) -> None:
    """The whole worker dies (its task process too), as when a pod or node is lost; three times over."""
    run_id = local_stack.api.trigger("probe_sleep", {"seconds": [15]})
    killed = []
    for trial in range(1, KILLS + 1):
        ti = local_stack.wait_for(lambda t=trial: _running_nap(local_stack, run_id, t), f"try {trial} running")
        proc = local_stack.worker_proc(ti["hostname"])
        os.killpg(proc.pid, signal.SIGKILL)
        killed.append(ti["hostname"])
    run = local_stack.api.wait_for_run("probe_sleep", run_id, RUN_BOUND)
    assert run["state"] == "success"
    tries = sorted(local_stack.api.tries("probe_sleep", run_id, "nap", map_index=0), key=lambda t: t["try_number"])
    assert [t["hostname"] for t in tries[:KILLS]] == killed
    assert all(t["state"] != "success" for t in tries[:KILLS])
    assert tries[-1]["state"] == "success"
    assert tries[-1]["try_number"] == KILLS + 1
    assert tries[-1]["hostname"] not in killed
    _all_succeeded(local_stack, "probe_sleep", run_id)


def test_sigterm_lets_the_running_task_finish_and_takes_nothing_new(local_stack: Running) -> None:
    first = local_stack.api.trigger("probe_sleep", {"seconds": [12]})
    ti = local_stack.wait_for(lambda: _running_nap(local_stack, first), "the long task running")
    draining = ti["hostname"]
    proc = local_stack.worker_proc(draining)
    os.kill(proc.pid, signal.SIGTERM)
    second = local_stack.api.trigger("probe_sleep", {"seconds": [1]})  # queued while the worker drains

    assert local_stack.api.wait_for_run("probe_sleep", first, RUN_BOUND)["state"] == "success"
    tries = local_stack.api.tries("probe_sleep", first, "nap", map_index=0)
    assert [(t["try_number"], t["state"], t["hostname"]) for t in tries] == [(1, "success", draining)]
    local_stack.wait_for(lambda: not proc.alive(), f"worker {draining} to exit after its warm shutdown", 120)

    assert local_stack.api.wait_for_run("probe_sleep", second, RUN_BOUND)["state"] == "success"
    later = local_stack.api.task_instances("probe_sleep", second)
    assert all(t["hostname"] != draining for t in later), later


def test_runs_finish_when_redis_restarts_mid_run(local_stack: Running) -> None:
    run_id = local_stack.api.trigger("probe_sleep", {"seconds": [3] * 6})
    local_stack.wait_for(lambda: local_stack.running_ti("probe_sleep", run_id, "nap"), "a task running")
    old = local_stack.stack.state().find("redis")
    new = restart(local_stack.stack, "redis", signal.SIGTERM)
    assert old is not None and new.pid != old.pid
    assert local_stack.api.wait_for_run("probe_sleep", run_id, RUN_BOUND)["state"] == "success"
    _all_succeeded(local_stack, "probe_sleep", run_id)


def test_runs_finish_when_the_scheduler_is_killed_and_restarted(local_stack: Running) -> None:
    """The new scheduler adopts the task the dead one had running: with tuning.taskTrackStarted off it is
    PENDING, not STARTED, in Celery's result backend, which Airflow adopts alike (one try, not a re-run)."""
    run_id = local_stack.api.trigger("probe_chain")
    local_stack.wait_for(lambda: local_stack.running_ti("probe_chain", run_id, "step_1"), "step_1 running")
    restart(local_stack.stack, "scheduler", signal.SIGKILL)
    assert local_stack.api.wait_for_run("probe_chain", run_id, RUN_BOUND)["state"] == "success"
    _all_succeeded(local_stack, "probe_chain", run_id)
    tries = {t["task_id"]: t["try_number"] for t in local_stack.api.task_instances("probe_chain", run_id)}
    assert tries["step_1"] == 1, tries
    local_stack.stack.wait_healthy()
