"""The local autoscaler on the real stack: scale from and to zero, and scale-in that stops idle workers only."""

from __future__ import annotations

import pytest

from tests.integration.stack.conftest import Running

pytestmark = pytest.mark.integration


def _serving(local_stack: Running, pool: str) -> list[str]:
    return [p.worker_name for p in local_stack.stack.state().workers(pool) if p.alive() and not p.draining]


def test_highmem_pool_scales_from_zero_and_back_to_zero(local_stack: Running) -> None:
    local_stack.wait_for(lambda: not _serving(local_stack, "highmem") or None, "highmem at zero workers", 120)
    run_id, run = local_stack.run("probe_highmem")
    assert run["state"] == "success"
    (ti,) = local_stack.api.task_instances("probe_highmem", run_id)
    assert ti["hostname"].startswith("highmem-")
    # cooldown 5 s in the test platform, then a warm shutdown of the idle worker
    local_stack.wait_for(lambda: not _serving(local_stack, "highmem") or None, "highmem back to zero", 120)
    local_stack.wait_for(lambda: not local_stack.stack.state().workers("highmem") or None, "drained worker gone", 120)


def test_scale_in_stops_the_idle_worker_never_the_busy_one(local_stack: Running) -> None:
    """Eight tasks on a pool of concurrency 4 want two workers; when only the long one is left, one goes."""
    local_stack.wait_for(lambda: len(_serving(local_stack, "default")) == 1 or None, "default pool at one worker", 120)
    run_id = local_stack.api.trigger("probe_sleep", {"seconds": [45] + [4] * 7})
    local_stack.wait_for(lambda: len(_serving(local_stack, "default")) == 2 or None, "a second default worker", 60)
    long = local_stack.wait_for(
        lambda: next(
            (t for t in local_stack.api.task_instances("probe_sleep", run_id) if t["map_index"] == 0 and t["hostname"]),
            None,
        ),
        "the long task to start",
        60,
    )
    busy = long["hostname"]
    local_stack.wait_for(lambda: _serving(local_stack, "default") == [busy] or None, "scale-in to the busy worker", 120)

    run = local_stack.api.wait_for_run("probe_sleep", run_id, 300)
    assert run["state"] == "success"
    tries = local_stack.api.tries("probe_sleep", run_id, "nap", map_index=0)
    assert [(t["try_number"], t["state"], t["hostname"]) for t in tries] == [(1, "success", busy)]
    log = (local_stack.stack.home / "logs" / "supervisor.log").read_text()
    assert "gets a warm shutdown" in log
    assert f"idle worker {busy} gets a warm shutdown" not in log
