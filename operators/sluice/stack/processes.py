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


def stop(
    proc: Proc,
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 30.0,
    signalled: bool = False,
    spare: frozenset[int] = frozenset(),
) -> str:
    """Ask the process to stop; after ``timeout`` kill its whole process group. Returns what happened.

    ``spare``: pids of other components, which the supervisor's restarts make its children: they and everything
    under them (a worker's pool and its running tasks) are stopped in their own turn, warmly, not killed as its
    leftovers."""
    live = proc.process()
    if live is None:
        return "stopped" if signalled else "not running"
    children = [c for c in live.children(recursive=True) if not _under(c, spare, live.pid)]
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
    clear_group(proc)
    return outcome


def _under(process: psutil.Process, spare: frozenset[int], top: int) -> bool:
    """Whether ``process`` is one of ``spare`` or runs under one of them (below ``top``)."""
    with contextlib.suppress(psutil.Error):
        for ancestor in [process, *process.parents()]:
            if ancestor.pid in spare:
                return True
            if ancestor.pid == top:
                return False
    return False


def clear_group(proc: Proc) -> None:
    """Kill what is left of a component whose main process is gone (its log server, bundle clean-up, task
    processes): a container's processes end with it. Each component leads its own process group."""
    if proc.alive():
        return
    for other in psutil.process_iter(["pid", "create_time"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            # group members started after our leader; a recycled pid leading a new group is not ours
            if (
                other.pid != proc.pid
                and os.getpgid(other.pid) == proc.pid
                and other.info["create_time"] >= proc.create_time - 0.05
            ):
                other.kill()


def last_line(log: str | Path, limit: int = 200) -> str:
    """The last non-empty line of a log (what a component said before it exited), shortened."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status when the process was our own child (tests, the autoscaler)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
