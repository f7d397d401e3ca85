"""Asking the stack's running Celery workers, through the broker and their reports: who answers a ping, who
holds a task, and which Sluice patches each one runs."""

from __future__ import annotations

import socket
from typing import Any

import psutil

from sluice.stack.home import StackHome
from sluice.stack.processes import Proc
from sluice.worker import report
from sluice.worker.report import PatchState

PING_TIMEOUT = 1.5  # seconds a ping or an inspection waits for the workers' replies


def celery_hostname(worker: str) -> str:
    return f"{worker}@{socket.gethostname()}"


def celery_app(broker_url: str) -> Any:
    from celery import Celery

    return Celery("sluice-stack", broker=broker_url, set_as_current=False)


def answering(broker_url: str, names: list[str]) -> set[str]:
    """The workers (by stack name) that answer a ping; none when the broker does not answer."""
    if not names:
        return set()
    try:
        destination = [celery_hostname(n) for n in names]
        replies = celery_app(broker_url).control.ping(destination=destination, timeout=PING_TIMEOUT)
    except Exception:  # broker down: no worker is reachable
        return set()
    hosts = {host for reply in replies for host in reply}
    return {n for n in names if celery_hostname(n) in hosts}


def busy(broker_url: str, names: list[str]) -> set[str] | None:
    """Workers (by stack name) holding an active or reserved task, from Celery's own inspection.

    None when a worker did not answer: a worker we cannot see is treated as busy by the caller.
    """
    if not names:
        return set()
    hosts = {celery_hostname(n) for n in names}
    inspect = celery_app(broker_url).control.inspect(destination=sorted(hosts), timeout=PING_TIMEOUT)
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    if set(active) != hosts:
        return None
    holding = {host for host, tasks in active.items() if tasks} | {host for host, tasks in reserved.items() if tasks}
    return {n for n in names if celery_hostname(n) in holding}


def patches(home: StackHome, proc: Proc) -> dict[str, PatchState] | None:
    """The patches a running worker reported at its start (``sluice.worker.patches``), or None before that."""
    live = proc.process()
    found = report.load(home.patch_report(proc.worker_name)) if live else None
    if live is None or found is None:
        return None
    try:
        ours = {live.pid, *(child.pid for child in live.children(recursive=True))}
    except psutil.Error:
        return None
    if found.pid not in ours:  # left by an earlier worker of that name
        return None
    return found.patches
