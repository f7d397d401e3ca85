"""Count a task's start as its first heartbeat: a short task makes three Execution-API calls, not four.

Airflow's task supervisor starts a task with ``PATCH /execution/task-instances/{id}/run``, which already
sets the task instance's ``last_heartbeat_at`` and answers whether the task may run at all. Its heartbeat
clock, though, starts at zero, so the first time the task process says anything (its rendered fields, a
log line) the supervisor sends ``PUT …/heartbeat`` as well, a few milliseconds after the start said the
same. On the bench every no-op task made exactly four requests (run, rtif, heartbeat, state): the
redundant heartbeat was a quarter of the API server's work per task.

With ``SLUICE_WORKER_START_HEARTBEAT`` (the chart's ``tuning.workerStartHeartbeat``) a successful start
also counts as the last heartbeat attempt, so the first ``PUT …/heartbeat`` comes one
``[workers] min_heartbeat_interval`` after the start and then every interval, as before. Nothing the
heartbeat guards changes: the start just told the supervisor the task may run, the task instance's
heartbeat timestamp is the start's, and a task that runs longer than the interval heartbeats as usual.
``sluice.worker.patches`` installs it at worker start, only where the supervisor's symbols check out
(``sluice.compat``).
"""

from __future__ import annotations

from typing import Any

from sluice import compat
from sluice.worker.settings import env_flag
from sluice.worker.supervisor_patch import SupervisorPatch

ENV = "SLUICE_WORKER_START_HEARTBEAT"


def enabled(value: str | None = None) -> bool:
    return env_flag(ENV, "tuning.workerStartHeartbeat", value)


def _on_child_started(self: Any, *args: Any, **kwargs: Any) -> None:
    PATCH.original(self, *args, **kwargs)  # type: ignore[misc]  # raises (and kills the task) if the start failed
    compat.count_start_as_heartbeat(self)  # the successful start set its last successful heartbeat


PATCH = SupervisorPatch(compat.Feature.START_HEARTBEAT, _on_child_started)


install = PATCH.install
uninstall = PATCH.uninstall
