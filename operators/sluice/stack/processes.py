"""Processes the local stack starts, and how it recognises and stops exactly those.

A process is identified by pid *and* start time, so a recycled pid never makes ``sluice down`` signal a
process it did not start. Each runs in its own session (its own process group) with its output in a log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Proc:
    """One process the stack started."""

    name: str  # unique in the stack: "scheduler", "worker default-1", "redis"
    kind: str  # api-server | scheduler | dag-processor | triggerer | worker | autoscaler | postgres | redis
    pid: int
    create_time: float
    log: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proc:
        return cls(**data)

    def process(self) -> psutil.Process | None:
        """The live process if it is still the one we started, else None."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def spawn(
    name: str,
    kind: str,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    user: str | None = None,
    **extra: Any,
) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=user,
        )
    # Not our child for long: ``sluice up`` exits and the processes live on (re-parented to init).
    return Proc(name, kind, child.pid, psutil.Process(child.pid).create_time(), str(log), extra)


def signal_proc(proc: Proc, sig: signal.Signals) -> bool:
    """Signal the main process only (a Celery worker's SIGTERM must not reach its task processes)."""
    live = proc.process()
    if live is None:
        return False
    live.send_signal(sig)
    return True


def wait_gone(proc: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            _reap(proc.pid)
            return True
        time.sleep(0.1)
    return not proc.alive()


def stop(proc: Proc, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0, signalled: bool = False) -> str:
    """Ask the process to stop; after ``timeout`` kill its whole process group. Returns what happened."""
    live = proc.process()
    if live is None:
        return "stopped" if signalled else "not running"
    children = live.children(recursive=True)
    if not signalled:
        live.send_signal(sig)
    if wait_gone(proc, timeout):
        outcome = "stopped"
    else:
        _kill_group(proc.pid)
        wait_gone(proc, 5)
        outcome = f"killed after {timeout:.0f} s"
    for child in children:  # leftovers that left the group (uvicorn workers, supervisors)
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return outcome


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status when the process was our own child (tests, the autoscaler)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
