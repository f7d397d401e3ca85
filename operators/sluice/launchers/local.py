"""Run a step as a local process with the same contract as a pod, and the profile's limits.

A step that would be OOM-killed or time out on the cluster fails the same way on a laptop: memory is
watched over the whole process tree, CPUs are pinned and thread pools sized from the profile.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from pathlib import Path
from typing import IO, Any

import psutil

from sluice.code_identity import CodeIdentity, of_local_command
from sluice.launchers.base import StepFailed, StepRun
from sluice.platform import Platform
from sluice.quantity import parse_quantity  # not the kubernetes client's: it would load the whole client here

POLL_SECONDS = 0.05
TAIL_LINES = 20
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def cpu_count_for(cpu: str) -> int:
    """Whole CPUs a profile grants locally: at least one, at most what this machine has."""
    wanted = math.ceil(float(parse_quantity(cpu)))
    return max(1, min(wanted, len(os.sched_getaffinity(0))))


def cores_for(step: StepRun, cpus: int) -> list[int]:
    """The ``cpus`` cores a step is pinned to: a window over this machine's cores that starts at the step's
    map index (or a hash of its task id), so steps running side by side in two worker slots (shards of one
    mapped step above all) land on different cores rather than all on the first."""
    cores = sorted(os.sched_getaffinity(0))
    start = step.map_index if step.map_index >= 0 else zlib.crc32(step.task_id.encode())
    return sorted(cores[(start + i) % len(cores)] for i in range(cpus))


def memory_bytes_for(memory: str) -> int:
    return int(parse_quantity(memory))


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class LocalLauncher:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._proc: subprocess.Popen[str] | None = None
        self.peak_memory_bytes: int | None = None

    def code_identity(self, step: StepRun, cache_version: str | None) -> CodeIdentity:
        """What the step's command resolves to on this machine, with the PATH the step gets (see
        sluice.code_identity): the step package's sources for ``sluice-step``, so an edited step runs again."""
        return of_local_command(step.command, self._env(step, 1)["PATH"])

    def _env(self, step: StepRun, cpus: int) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        env.update({name: str(cpus) for name in THREAD_ENV})
        # Steps share a laptop's cores, unlike pods: OpenMP threads that spin while they wait (libgomp's default)
        # starve the step beside them. Measured here: two histogram gradient boosting fits side by side, 2 threads
        # each on 2 cores, 4.9 s each by default, 0.7 s with PASSIVE; in bench/scale.py a candidate took 24.4 s
        # instead of 1.8 s next to another step. A step's own env may set it back.
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(step.env)
        return env

    def run(self, step: StepRun, log: logging.Logger, context: Any | None = None) -> None:
        profile = step.profile
        cpus = cpu_count_for(profile.cpu)
        limit = memory_bytes_for(profile.memory)
        allowed = cores_for(step, cpus)
        log.info(
            "local launcher: %s (profile %s: %d cpu, memory limit %s, timeout %s)",
            " ".join(step.command),
            step.profile_name,
            cpus,
            profile.memory,
            f"{profile.timeout_seconds}s" if profile.timeout_seconds else "none",
        )
        # The child inherits the launching thread's CPU mask: set it around the spawn rather than in a
        # preexec_fn, which would force the slow fork path on every step.
        own_mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, allowed)
        try:
            self._proc = subprocess.Popen(
                step.command,
                env=self._env(step, cpus),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise StepFailed(
                f"step command {step.command[0]!r} not found; install the step package into this "
                "environment (make demo does) or fix the task's command"
            ) from None
        finally:
            os.sched_setaffinity(0, own_mask)
        proc = self._proc
        stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, log, logging.INFO, None), daemon=True),
            threading.Thread(target=self._pump, args=(proc.stderr, log, logging.WARNING, stderr_tail), daemon=True),
        ]
        for reader in readers:
            reader.start()
        peak, reason = self._watch(proc, limit, profile.timeout_seconds, step.profile_name, profile.memory)
        self.peak_memory_bytes = peak
        for reader in readers:
            reader.join(timeout=5)
        log.info("step exited with code %s (peak memory %.1f MiB)", proc.returncode, peak / 2**20)
        if reason:
            raise StepFailed(reason)
        if proc.returncode != 0:
            message = stderr_tail[-1] if stderr_tail else "(no output on stderr)"
            raise StepFailed(f"step {' '.join(step.command)} failed with exit code {proc.returncode}: {message}")

    def _watch(
        self, proc: subprocess.Popen[str], limit: int, timeout: int | None, profile_name: str, memory: str
    ) -> tuple[int, str | None]:
        watched = psutil.Process(proc.pid)
        started = time.monotonic()
        peak = 0
        while proc.poll() is None:
            try:
                rss = _tree_rss(watched)
            except psutil.NoSuchProcess:
                rss = 0
            peak = max(peak, rss)
            if rss > limit:
                self._kill(proc)
                return peak, (
                    f"step exceeded memory limit of profile {profile_name!r} ({memory}): "
                    f"resident memory reached {rss / 2**20:.0f} MiB; use a profile with more memory "
                    "(e.g. highmem) or reduce the step's data"
                )
            if timeout and time.monotonic() - started > timeout:
                self._kill(proc)
                return peak, (f"step exceeded the timeout of profile {profile_name!r} ({timeout}s) and was stopped")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_SECONDS)  # returns the moment the step exits: no idle tail
        return peak, None

    @staticmethod
    def _pump(stream: IO[str] | None, log: logging.Logger, level: int, tail: deque[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            line = line.rstrip("\n")
            log.log(level, "[step] %s", line)
            if tail is not None and line.strip():
                tail.append(line)

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait()

    def resume(self, step: StepRun, log: logging.Logger, context: Any, event: dict[str, Any]) -> None:
        raise StepFailed("the local launcher never defers, so it has nothing to resume; check launcher.type")

    def on_kill(self) -> None:
        if self._proc and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill(self._proc)
            except ProcessLookupError:
                pass
