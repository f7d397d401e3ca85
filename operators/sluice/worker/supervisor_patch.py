"""One method of Airflow's task supervisor (``ActivitySubprocess``) replaced while a worker switch is on.

``sluice.worker.exit_wakeup`` and ``sluice.worker.start_heartbeat`` each wrap one supervisor method: the
replacement calls ``original`` (Airflow's own), and ``uninstall`` puts Airflow's back. Whether Airflow still
has the method as expected is ``sluice.compat``'s question, asked by ``sluice.worker.patches`` before ``install``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice import compat


class SupervisorPatch:
    def __init__(self, feature: compat.Feature, replacement: Callable[..., Any]) -> None:
        self.feature = feature  # which method: compat.SUPERVISOR_METHODS[feature]
        self.replacement = replacement
        self.original: Callable[..., Any] | None = None  # Airflow's method, while the replacement is installed

    def install(self) -> None:
        if self.original is None:
            self.original = compat.replace_supervisor_method(self.feature, self.replacement)

    def uninstall(self) -> None:
        if self.original is None:
            return
        compat.restore_supervisor_method(self.feature, self.original)
        self.original = None
