"""Celery settings every Sluice pool relies on for warm shutdown and redelivery (no Airflow import)."""

from __future__ import annotations

from typing import Any

# Airflow's defaults match today; pinned so a changed default upstream cannot make scale-in lossy:
# late acks put a task back on the queue if its worker dies, and prefetch 1 means a draining worker
# holds no reserved tasks that other workers could be running.
SLUICE_WORKER_SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    # Runs in the worker's main process before the pool forks (see sluice.worker.preload).
    "imports": ("sluice.worker.preload",),
}
