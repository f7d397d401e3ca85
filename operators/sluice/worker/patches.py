"""Install Sluice's worker patches when a Celery worker starts, each only where Airflow still matches it.

Celery's ``imports`` (``sluice.worker.settings``) name this module. Importing it checks the switches (a value
that is not a boolean stops the worker and names the chart value) and connects ``worker_init``, which Celery
sends in the worker's main process once logging is set up and before the pool forks. There each switched-on
patch asks ``sluice.compat`` whether the Airflow symbols it replaces still check out (tested version range,
feature test). If not, the patch is not installed, one warning names it and the reason, and the worker runs
Airflow's own code. Then one log line says what is active, and the same goes to the worker's patch report
(``sluice.worker.report``; ``sluice status`` reads it for the local stack's workers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from celery.signals import worker_init

from sluice import compat
from sluice.worker import dag_cache, exit_wakeup, report, start_heartbeat

log = logging.getLogger(__name__)

ACTIVE, OFF, NOT_INSTALLED = report.ACTIVE, report.OFF, report.NOT_INSTALLED


@dataclass(frozen=True)
class Patch:
    feature: compat.Feature  # the symbols it relies on: sluice.compat's entries for this feature
    module: ModuleType  # ENV, enabled(), install(), uninstall()
    chart_value: str
    platform_problem: Callable[[], str | None] = lambda: None  # what the patch needs beyond Airflow

    @property
    def name(self) -> str:
        return self.feature.value

    def problem(self) -> str | None:
        return compat.problem(self.feature) or self.platform_problem()


PATCHES = (
    Patch(compat.Feature.DAG_CACHE, dag_cache, "tuning.workerDagCache"),
    Patch(compat.Feature.EXIT_WAKEUP, exit_wakeup, "tuning.workerExitWakeup", exit_wakeup.platform_problem),
    Patch(compat.Feature.START_HEARTBEAT, start_heartbeat, "tuning.workerStartHeartbeat"),
)


def install(patch: Patch) -> str:
    """``active``, ``off`` (switched off) or ``not installed: <why>`` (then the worker runs stock Airflow)."""
    if not patch.module.enabled():
        return OFF
    found = patch.problem()
    if found is None:
        try:
            patch.module.install()
            return ACTIVE
        except Exception as exc:  # a worker must start whatever a patch does
            patch.module.uninstall()
            found = f"installing it failed: {exc!r}"
    log.warning(
        "Sluice worker patch %s (%s, %s) not installed, this worker runs Airflow's own code instead: %s",
        patch.name,
        patch.chart_value,
        patch.module.ENV,
        found,
    )
    return f"{NOT_INSTALLED}: {found}"


def install_all() -> dict[str, str]:
    states = {patch.name: install(patch) for patch in PATCHES}
    summary = ", ".join(f"{name} {state.split(':')[0]}" for name, state in states.items())
    airflow = compat.installed_version("apache-airflow-core")
    log.info("Sluice worker patches (Airflow %s): %s", airflow, summary)
    report.write(states, airflow)
    return states


def check_switches() -> None:
    for patch in PATCHES:
        patch.module.enabled()  # raises ValueError naming the chart value


def _on_worker_init(**_: Any) -> None:
    install_all()


check_switches()
worker_init.connect(_on_worker_init, weak=False, dispatch_uid="sluice-worker-patches")
