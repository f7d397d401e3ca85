"""Failure propagation, retries with backoff and schedules on the local stack (real scheduler and workers)."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import pytest

from tests.integration.stack.conftest import Running

pytestmark = pytest.mark.integration


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def failure_run(local_stack: Running) -> tuple[str, dict]:
    return local_stack.run("probe_failure")


def test_a_failed_task_leaves_its_children_upstream_failed(local_stack: Running, failure_run: tuple[str, dict]) -> None:
    run_id, run = failure_run
    states = {ti["task_id"]: ti["state"] for ti in local_stack.api.task_instances("probe_failure", run_id)}
    assert run["state"] == "failed"
    assert states == {
        "breaks": "failed",
        "child": "upstream_failed",
        "grandchild": "upstream_failed",
        "flaky": "success",
    }


def test_retries_happen_after_the_backoff(local_stack: Running, failure_run: tuple[str, dict]) -> None:
    run_id, _ = failure_run
    tries = sorted(local_stack.api.tries("probe_failure", run_id, "flaky"), key=lambda t: t["try_number"])
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")]
    gap = (_ts(tries[1]["start_date"]) - _ts(tries[0]["end_date"])).total_seconds()
    assert gap >= 2, f"retry started {gap:.1f} s after the failure; retry_delay is 2 s"


def _scheduled_successes(local_stack: Running) -> list[dict]:
    runs = local_stack.api.dag_runs("probe_scheduled")
    return [r for r in runs if r["run_type"] == "scheduled" and r["state"] == "success"]


def test_a_scheduled_dag_gets_its_runs(local_stack: Running) -> None:
    api = local_stack.api
    api.wait_for_dag("probe_scheduled")
    api.unpause("probe_scheduled")
    try:
        done = local_stack.wait_for(
            lambda: runs if len(runs := _scheduled_successes(local_stack)) >= 3 else None,
            "three successful scheduled runs of probe_scheduled (every 10 s)",
            timeout=120,
        )
    finally:
        api.unpause("probe_scheduled", paused=True)
    # Runs keep coming on the timer: the newest was queued at least one interval after the oldest.
    queued = sorted(_ts(r["queued_at"]) for r in done)
    assert (queued[-1] - queued[0]).total_seconds() >= 8
    ends = sorted(_ts(r["data_interval_end"]) for r in done)
    assert all((later - earlier).total_seconds() >= 10 for earlier, later in pairwise(ends))
