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
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil


class Kind(StrEnum):
    """What a process is in the stack: how it is started again, stopped, and judged healthy."""

    API_SERVER = "api-server"
    SCHEDULER = "scheduler"
    DAG_PROCESSOR = "dag-processor"
    TRIGGERER = "triggerer"
    WORKER = "worker"
    SUPERVISOR = "supervisor"
    POSTGRES = "postgres"
    REDIS = "redis"


class Stopping(StrEnum):
    """Why a process is being stopped on purpose: the supervisor does not start it again."""

    DRAIN = "drain"  # a warm shutdown (the autoscaler): it exits once its tasks are done, and leaves the record
    RESTART = "restart"  # someone else stops it and starts it again (tests/support/stack.py)


@dataclass
class Worker:
    """What makes a process one of a pool's Celery workers."""

    name: str  # "default-1": never reused in a stack, so task instances' hostnames tell the processes apart
    pool: str
    log_server_port: int  # its own, so that two workers on one machine serve their task logs side by side
    grace: float  # seconds `sluice down` waits for its warm shutdown (the pool's terminationGracePeriodSeconds)
    replaces: str | None = None  # the dead worker the supervisor started this one in place of


@dataclass
class Proc:
    """One process the stack started, and what the stack has learnt about it."""

    name: str  # unique in the stack: "scheduler", "worker default-1", "redis"
    kind: Kind
    pid: int
    create_time: float
    log: str
    worker: Worker | None = None  # set for kind worker
    port: int | None = None  # a throwaway service's (Redis, PostgreSQL): it comes back on the same one
    restarts: int = 0  # by the supervisor
    last_exit: str = ""  # the supervisor's account of how the previous process of this name ended
    exit_status: str = ""  # how this process ended ("killed by SIGKILL"), once collected: only once, by its parent
    stopping: Stopping | None = None

    def __post_init__(self) -> None:
        self.kind = Kind(self.kind)  # a plain string from a caller (services.py, tests) becomes the enum

    @property
    def draining(self) -> bool:
        return self.stopping is Stopping.DRAIN

    @property
    def worker_name(self) -> str:
        """The worker's name in its pool; only a worker has one."""
        if self.worker is None:
            raise ValueError(f"{self.name} ({self.kind}) is not a worker")
        return self.worker.name

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
    kind: Kind | str,
    argv: list[str],
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    user: str | None = None,
    *,
    worker: Worker | None = None,
    port: int | None = None,
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
    created = psutil.Process(child.pid).create_time()
    return Proc(name, Kind(kind), child.pid, created, str(log), worker=worker, port=port)


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
