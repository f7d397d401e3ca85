"""One method of Airflow's task supervisor (``ActivitySubprocess``) replaced while a worker switch is on.

``sluice.worker.exit_wakeup`` and ``sluice.worker.start_heartbeat`` each wrap one supervisor method: the
replacement calls ``original`` (Airflow's own), and ``uninstall`` puts Airflow's back. Whether Airflow still
has the method as expected is ``sluice.compat``'s question, asked by ``sluice.worker.patches`` before ``install``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SupervisorPatch:
    def __init__(self, method: str, replacement: Callable[..., Any]) -> None:
        self.method = method
        self.replacement = replacement
        self.original: Callable[..., Any] | None = None  # Airflow's method, while the replacement is installed

    def install(self) -> None:
        if self.original is None:
            from airflow.sdk.execution_time.supervisor import ActivitySubprocess

            self.original = getattr(ActivitySubprocess, self.method)
            setattr(ActivitySubprocess, self.method, self.replacement)

    def uninstall(self) -> None:
        if self.original is None:
            return
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess

        setattr(ActivitySubprocess, self.method, self.original)
        self.original = None
