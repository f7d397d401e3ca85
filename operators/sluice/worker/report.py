"""The patch report a worker writes at start and ``sluice status`` reads: which Sluice patches it runs.

A JSON file (``{"pid", "airflow", "patches": {name: state}}``) at the path ``SLUICE_WORKER_PATCH_REPORT`` names;
the local stack sets one per worker. A state is ``active``, ``off`` or ``not installed: <why>`` on disk (and in
the worker's log line); ``load`` reads it back as a ``PatchState``. Written whole (a rename), so a reader never
sees half of it. No Airflow or Celery import here: ``sluice status`` reads it without loading either.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sluice.atomic import write_atomic

ENV = "SLUICE_WORKER_PATCH_REPORT"
log = logging.getLogger(__name__)


class Patched(StrEnum):
    """Whether a worker runs one of Sluice's patches."""

    ACTIVE = "active"
    OFF = "off"  # switched off by its tuning value
    NOT_INSTALLED = "not installed"  # Airflow does not match what the patch relies on: a reason goes with it


ACTIVE, OFF, NOT_INSTALLED = Patched.ACTIVE.value, Patched.OFF.value, Patched.NOT_INSTALLED.value
_SEPARATOR = ": "  # between "not installed" and why, in the report and the worker's log line


@dataclass(frozen=True)
class PatchState:
    state: Patched
    why: str = ""  # for NOT_INSTALLED: what in Airflow did not match

    @classmethod
    def parse(cls, text: str) -> PatchState:
        """A state as the report holds it; anything unknown is shown as not installed, with the text as why."""
        head, _, why = text.partition(_SEPARATOR)
        try:
            return cls(Patched(head), why)
        except ValueError:
            return cls(Patched.NOT_INSTALLED, f"unknown state {text!r}")

    def __str__(self) -> str:
        return f"{self.state}{_SEPARATOR}{self.why}" if self.why else str(self.state)


@dataclass(frozen=True)
class PatchReport:
    pid: int  # the worker's main process: a report left by an earlier worker of that name names another
    airflow: str | None
    patches: dict[str, PatchState]


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
    """The report as written (JSON), or None when there is none or it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("patches"), dict) else None


def load(path: str | os.PathLike[str]) -> PatchReport | None:
    """The report, typed; None when there is none or it is not one."""
    data = read(path)
    if data is None or not isinstance(data.get("pid"), int):
        return None
    airflow = data.get("airflow")
    patches = {str(name): PatchState.parse(str(state)) for name, state in data["patches"].items()}
    return PatchReport(data["pid"], airflow if isinstance(airflow, str) else None, patches)
