"""Every task process a pool process forks dies with it (``sluice.lifetime``).

Airflow's supervisor, running in the Celery pool process, forks one process per task into a process group of its
own. ``worker_process_init`` runs in each pool process right after Celery forks it; there a fork hook is
registered, so each task process sets ``PR_SET_PDEATHSIG`` first thing. A worker that is SIGKILLed (its main
process, its pool) then takes its running tasks with it at once, before the scheduler can retry them: no task
runs twice. A warm shutdown is unaffected: a pool process outlives the tasks it supervises.
"""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_process_init

from sluice.lifetime import die_with_parent


def _on_pool_process_start(**_: Any) -> None:
    os.register_at_fork(after_in_child=die_with_parent)


worker_process_init.connect(_on_pool_process_start, weak=False, dispatch_uid="sluice-task-lifetime")
