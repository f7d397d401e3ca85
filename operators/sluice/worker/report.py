"""The patch report a worker writes at start and ``sluice status`` reads: which Sluice patches it runs.

A JSON file (``{"pid", "airflow", "patches": {name: state}}``) at the path ``SLUICE_WORKER_PATCH_REPORT`` names;
the local stack sets one per worker. Written whole (a rename), so a reader never sees half of it. No Airflow or
Celery import here: ``sluice status`` reads it without loading either.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sluice.atomic import write_atomic

ENV = "SLUICE_WORKER_PATCH_REPORT"
ACTIVE, OFF, NOT_INSTALLED = "active", "off", "not installed"  # a patch's state; not installed is followed by why
log = logging.getLogger(__name__)


def write(states: dict[str, str], airflow: str | None, path: str | None = None) -> None:
    target = path or os.environ.get(ENV)
    if not target:
        return
    report = {"pid": os.getpid(), "airflow": airflow, "patches": states}
    try:
        write_atomic(target, json.dumps(report))
    except OSError as exc:  # a report is for people; the worker runs without it
        log.warning("could not write the worker's patch report to %s: %s", target, exc)


def read(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("patches"), dict) else None
