"""Import, once in each Celery worker's main process, the modules every task process would import itself.

Airflow runs each task in a process forked from the worker's pool process, and that process parses the
task's DAG file: any module the worker has not imported yet (the standard provider's Python operators,
Sluice's own operator) is imported again by every single task. Celery's ``imports`` setting names this
module, so it runs before the pool forks and every task inherits the modules ready-made. It also configures
SQLAlchemy's ORM mappers here: otherwise each pool process does it at its first Celery result write (the
result backend is an ORM model), and Airflow's hook on that event imports all of Airflow's models, ~0.25 s of
CPU per pool process and pages no longer shared. With the local launcher (the local stack) it also starts
the warm step runner and fills the code-identity caches of the shipped steps
(``sluice.launchers.local.warm_local_steps``): each task would otherwise hash and parse the step package's
files again, ~30 ms. ``gc.freeze()`` then moves what is loaded out of the
collector's reach, so children do not touch (and copy) those pages.

The list comes from ``SLUICE_WORKER_PRELOAD`` (comma-separated; the chart's ``tuning.workerPreload``).
"""

from __future__ import annotations

import gc
import importlib
import os

ENV = "SLUICE_WORKER_PRELOAD"


def preload_modules(value: str | None = None) -> list[str]:
    raw = os.environ.get(ENV, "") if value is None else value
    return [name.strip() for name in raw.split(",") if name.strip()]


def preload(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"{ENV} names {name!r}, which cannot be imported in this worker ({exc}); "
                "fix or remove it in the chart's tuning.workerPreload"
            ) from exc
    if "sluice.operators" in modules:
        from sluice.launchers.local import warm_local_steps
        from sluice.platform import current_platform

        # Parsed once here rather than by every task's DAG file (the routing policy reads it per task); with the
        # local launcher (the local stack, steps beside the worker) the warm runner and step identities too.
        warm_local_steps(current_platform())
    if modules:
        configure_orm()
        gc.freeze()


def configure_orm() -> None:
    import celery.backends.database.models  # noqa: F401  (the result backend's own mapped classes)
    from sqlalchemy.orm import configure_mappers

    configure_mappers()


preload(preload_modules())
