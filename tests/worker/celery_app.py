"""A real Celery app with Sluice's worker settings and deletion-cost keeper, for the worker tests.

The broker comes from ``SLUICE_TEST_REDIS``; tasks leave marker files (no result backend) so the test
sees what ran, and what still waits is read from the broker's queue itself.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import time
from pathlib import Path

from celery import Celery
from sluice.worker import deletion_cost
from sluice.worker.settings import SLUICE_WORKER_SETTINGS

# An Airflow without one of the symbols Sluice's worker patches rely on (tests/worker/test_worker_patches.py):
# "module:name" is taken away before the worker starts.
if os.environ.get("SLUICE_TEST_REMOVE"):
    module, _, name = os.environ["SLUICE_TEST_REMOVE"].partition(":")
    delattr(importlib.import_module(module), name)

app = Celery("sluice_worker_tests", broker=os.environ["SLUICE_TEST_REDIS"])
app.conf.update(SLUICE_WORKER_SETTINGS, task_default_queue="default", worker_hijack_root_logger=False)
deletion_cost.install()


@app.task(name="sleep_task")
def sleep_task(name: str, seconds: float, markers: str) -> str:
    folder = Path(markers)
    (folder / f"{name}.started").touch()
    time.sleep(seconds)
    (folder / f"{name}.done").touch()
    return name


@app.task(name="report_modules")
def report_modules(names: list[str], out: str) -> None:
    """What this task's process found already loaded when it started: inherited from the worker or not."""
    import celery.backends.database.models  # noqa: F401  (mapped classes, as the worker's result backend has)
    from sqlalchemy.orm import mapperlib

    report = {
        "loaded": {name: name in sys.modules for name in names},
        "frozen": gc.get_freeze_count(),
        "mappers_configured": not any(registry._new_mappers for registry in mapperlib._mapper_registries),
        "steps_named_from_inherited_caches": _steps_named_without_reading(),
    }
    Path(out).write_text(json.dumps(report))


def _steps_named_without_reading() -> bool:
    """Whether every shipped step's code identity comes from caches this process inherited: no step package file
    is read or parsed (a local stack's worker fills them before its pool forks, sluice.worker.preload)."""
    from sluice import module_closure
    from sluice.code_identity import of_local_command
    from sluice.launchers.local import shipped_step_commands, step_path

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("not served from the inherited caches")

    search = step_path(os.environ.get("PATH", ""))
    kept = module_closure._read_imports, Path.open
    module_closure._read_imports, Path.open = refuse, refuse  # type: ignore[assignment,method-assign]
    try:
        return all(of_local_command(command, search).value for command in shipped_step_commands())
    except AssertionError:
        return False
    finally:
        module_closure._read_imports, Path.open = kept  # type: ignore[method-assign]
