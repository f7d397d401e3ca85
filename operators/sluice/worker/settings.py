"""Celery settings every Sluice pool relies on for warm shutdown and redelivery (no Airflow import)."""

from __future__ import annotations

import os
from typing import Any

# Airflow's defaults match today; pinned so a changed default upstream cannot make scale-in lossy:
# late acks put a task back on the queue if its worker dies, and prefetch 1 means a draining worker
# holds no reserved tasks that other workers could be running.
SLUICE_WORKER_SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    # Imported in the worker's main process before the pool forks: preload at once; the patches (dag cache,
    # exit wake-up, start heartbeat) at worker_init, each only where sluice.compat finds Airflow as tested; with
    # the container launcher, a sweep of step containers dead tasks left; in each pool process, a fork hook that
    # ties every task process to it (a SIGKILLed worker's tasks die with it, not run on beside their retries).
    "imports": (
        "sluice.worker.preload",
        "sluice.worker.patches",
        "sluice.worker.step_containers",
        "sluice.worker.task_lifetime",
    ),
    # After a broker connection loss Celery would cut the prefetch count to 1 and restore it one slot per finished
    # task: waiting tasks then ran in waves (6 tasks in 3 waves, 124 s instead of ~65 s, on the local stack).
    # Prefetch is 1 per slot anyway, so restoring it at once over-fetches nothing a slot is not free for.
    "worker_enable_prefetch_count_reduction": False,
}

TRUE, FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


def env_flag(env: str, chart_value: str, value: str | None = None) -> bool:
    """A boolean worker setting from the environment (``value`` instead, when given); unset is off."""
    raw = (os.environ.get(env, "") if value is None else value).strip().lower()
    if raw not in TRUE | FALSE:
        raise ValueError(f"{env}={raw!r} is neither true nor false; set the chart's {chart_value} to a boolean")
    return raw in TRUE
