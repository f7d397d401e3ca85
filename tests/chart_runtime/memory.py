"""A pod's memory as its cgroup would charge it, sampled while it works: what sizes the worker pools' limits.

The harness runs a pod's containers as local process trees (``kubelet.ContainerRun.proc`` leads a session), so
the memory the pod's cgroup would hold is estimated from ``/proc/<pid>/smaps_rollup`` of every process in them:
anonymous and shmem pages by PSS (the prefork parent and its children share copy-on-write pages; PSS counts a
shared page once across the pod, all its sharers being in the pod), file pages (the venv's shared libraries and
bytecode, mapped by every process alike) once, as the largest ``Rss_File`` of any process. Plain ΣPSS is kept
beside it: it is what ``smem`` reports, and under-counts file pages shared with other pods' processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

KIB = 1024


@dataclass
class Reading:
    charged: int  # bytes: Σ Pss_Anon + Σ Pss_Shmem + max Rss_File
    pss: int  # bytes: Σ Pss
    processes: int


def rollup(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` as bytes per field ({} if the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            lines = handle.read().splitlines()[1:]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * KIB
    return out


def tree(pid: int) -> list[int]:
    """The process and every descendant (a container's whole process tree)."""
    try:
        leader = psutil.Process(pid)
        return [pid, *(child.pid for child in leader.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def read(pids: list[int]) -> Reading:
    rollups = [r for r in (rollup(pid) for pid in pids) if r]
    anon = sum(r.get("Pss_Anon", 0) + r.get("Pss_Shmem", 0) for r in rollups)
    files = max((r.get("Rss", 0) - r.get("Anonymous", 0) for r in rollups), default=0)
    return Reading(anon + max(files, 0), sum(r.get("Pss", 0) for r in rollups), len(rollups))


@dataclass
class PeakMemory:
    """Samples ``read(roots())`` (each root with its descendants) every ``period`` seconds in a thread and keeps
    the peak reading and the largest number of busy task processes seen beside it (``busy(pids)``)."""

    roots: Callable[[], list[int]]
    busy: Callable[[list[int]], int] = lambda pids: 0
    period: float = 0.5
    peak: Reading = field(default_factory=lambda: Reading(0, 0, 0))
    peak_busy: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pids = [pid for root in self.roots() for pid in tree(root)]
            reading = read(pids)
            self.samples += 1
            if reading.charged > self.peak.charged:
                self.peak = reading
            self.peak_busy = max(self.peak_busy, self.busy(pids))
            self._stop.wait(self.period)


def task_processes(pids: list[int]) -> int:
    """How many of ``pids`` are Airflow task processes at work: the supervisor's forked task runner names itself
    ``airflow worker -- <ti id>`` through setproctitle (airflow.sdk.execution_time.task_runner)."""
    count = 0
    for pid in pids:
        try:
            if " ".join(psutil.Process(pid).cmdline()).startswith("airflow worker -- "):
                count += 1
        except psutil.NoSuchProcess:
            continue
    return count
