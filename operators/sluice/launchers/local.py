"""Run a step as a local process with the same contract as a pod, and the profile's limits.

A step that would be OOM-killed or time out on the cluster fails the same way on a laptop: memory is
watched over the whole process tree, CPUs are pinned and thread pools sized from the profile.

``sluice-step`` commands start in the warm step runner when they can (sluice.launchers.warm: a fork server that
has the heavy libraries imported already), else as a plain process; either way the launcher watches, times out
and kills the step by its pid and process group alike.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import psutil

from sluice.code_identity import CodeIdentity, of_local_command
from sluice.contract import EXIT_USAGE
from sluice.launchers import warm
from sluice.launchers.base import FailureKind, LaunchResult, StepFailed, StepLog, StepRun
from sluice.lifetime import tied_to_this_process
from sluice.platform import Platform, sluice_home
from sluice.quantity import parse_quantity  # not the kubernetes client's: it would load the whole client here

POLL_SECONDS = 0.05
TAIL_LINES = 20
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class StepProcess(Protocol):
    """What the launcher watches: a ``subprocess.Popen`` or a step the warm runner started."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | Any: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


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


def step_path(path: str) -> str:
    """The PATH a local step gets: this interpreter's scripts (``sluice-step``) first, then ``path``."""
    return os.pathsep.join([str(Path(sys.executable).parent), path])


def warm_local_steps(platform: Platform, commands: Iterable[Sequence[str]] | None = None) -> None:
    """What a process that forks task processes does first when ``platform``'s launcher is this one (the embedded
    run, a Celery worker's preload): start the warm step runner, and fill the code-identity caches for
    ``commands`` (default: every step the shipped step images describe) so that each task process inherits them."""
    if platform.launcher.type != "local":
        return
    warm.prestart(sluice_home(), step_path(os.environ.get("PATH", "")))
    warm_code_identity(shipped_step_commands() if commands is None else commands)


def shipped_step_commands() -> list[list[str]]:
    """``<entrypoint> <step>`` for every step of the step images whose specs ship with Sluice."""
    from sluice import specs

    commands = []
    for image in specs.shipped_images():
        found = specs.image_specs(image)
        if found is not None:
            commands += [[found.entrypoint, name] for name in found.steps]
    return commands


def warm_code_identity(commands: Iterable[Sequence[str]]) -> None:
    """Fill this process's code-identity caches (file hashes, import closures, entry points) for these step
    commands, so the task processes forked from it later start with them: ~30 ms less of every step task's
    start on the embedded run. The caches check each file's stat signature, so an edit still counts."""
    path = step_path(os.environ.get("PATH", ""))
    for command in {tuple(command) for command in commands if command}:
        of_local_command(list(command), path)


def _not_found(step: StepRun) -> StepFailed:
    return StepFailed(
        f"step command {step.command[0]!r} not found; install the step package into this environment (make demo "
        "does) or fix the task's command"
    )


def pump_lines(stream: IO[str] | None, log: StepLog, level: int, tail: deque[str] | None) -> None:
    """Copy a step's output into the task log line by line, keeping the last non-empty lines in ``tail``."""
    if stream is None:
        return
    for line in stream:
        line = line.rstrip("\n")
        log.log(level, "[step] %s", line)
        if tail is not None and line.strip():
            tail.append(line)


def exit_result(
    step: StepRun,
    code: int | None,
    peak: int | None,
    failure: FailureKind | None,
    reason: str,
    stderr_tail: deque[str],
    killed: bool,
) -> LaunchResult:
    """How a step process (or container) ended, from its exit code and what its watcher saw."""
    if failure is not None:
        return LaunchResult(code, failure, reason, peak)
    if code == 0:
        return LaunchResult(0, None, "", peak)
    last = stderr_tail[-1] if stderr_tail else "(no output on stderr)"
    shown = " ".join(arg if len(arg) <= 80 else f"{arg[:40]}…" for arg in step.command)
    message = f"step {shown} failed with exit code {code}: {last}"
    if killed:
        return LaunchResult(code, FailureKind.KILLED, f"{message} (stopped because the task was killed)", peak)
    if code == EXIT_USAGE:
        return LaunchResult(code, FailureKind.UNKNOWN_STEP, message, peak)
    return LaunchResult(code, FailureKind.EXIT, message, peak)


class LocalLauncher:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._proc: StepProcess | None = None
        self._killed = False

    def code_identity(self, step: StepRun, cache_version: str | None) -> CodeIdentity:
        """What the step's command resolves to on this machine, with the PATH the step gets (see
        sluice.code_identity): the step package's sources for ``sluice-step``, so an edited step runs again."""
        return of_local_command(step.command, self._env(step, 1)["PATH"])

    def _env(self, step: StepRun, cpus: int) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = step_path(env.get("PATH", ""))
        env.update({name: str(cpus) for name in THREAD_ENV})
        # Steps share a laptop's cores, unlike pods: OpenMP threads that spin while they wait (libgomp's default)
        # starve the step beside them. Measured here: two histogram gradient boosting fits side by side, 2 threads
        # each on 2 cores, 4.9 s each by default, 0.7 s with PASSIVE; in bench/scale.py a candidate took 24.4 s
        # instead of 1.8 s next to another step. A step's own env may set it back.
        env["OMP_WAIT_POLICY"] = warm.WAIT_POLICY
        env["PYTHONUNBUFFERED"] = "1"
        env.update(step.env)
        return env

    def run(self, step: StepRun, log: StepLog, context: Any | None = None) -> LaunchResult:
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
        env = self._env(step, cpus)
        if shutil.which(step.command[0], path=env["PATH"]) is None:
            raise _not_found(step)
        started = self._start_warm(step, env, allowed, log) or self._start_process(step, env, allowed)
        proc, stdout, stderr, how = started
        self._proc = proc
        log.info("step running %s (pid %d)", how, proc.pid)
        stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        readers = [
            threading.Thread(target=pump_lines, args=(stdout, log, logging.INFO, None), daemon=True),
            threading.Thread(target=pump_lines, args=(stderr, log, logging.WARNING, stderr_tail), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            peak, failure, reason = self._watch(proc, limit, profile.timeout_seconds)
        finally:
            if isinstance(proc, warm.WarmStep):
                proc.close()  # a step still running here (the launcher failed) is killed by the runner
        for reader in readers:
            reader.join(timeout=5)
        if isinstance(proc, warm.WarmStep):
            if proc.lost:
                log.warning("the warm runner went away while the step ran: it was killed with it")
            for stream, reader in ((stdout, readers[0]), (stderr, readers[1])):
                if not reader.is_alive():
                    stream.close()
        log.info("step exited with code %s (peak memory %.1f MiB)", proc.returncode, peak / 2**20)
        return exit_result(step, proc.returncode, peak, failure, reason, stderr_tail, self._killed)

    def _start_process(
        self, step: StepRun, env: dict[str, str], allowed: list[int]
    ) -> tuple[StepProcess, IO[str], IO[str], str]:
        """The step as a process of its own (what every step was before the warm runner)."""
        # The child inherits the launching thread's CPU mask: set it around the spawn rather than in a
        # preexec_fn, which would force the slow fork path on every step.
        own_mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, allowed)
        try:
            proc = subprocess.Popen(
                tied_to_this_process(step.command),  # a killed task (worker) leaves no step process behind
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise _not_found(step) from None
        finally:
            os.sched_setaffinity(0, own_mask)
        assert proc.stdout is not None and proc.stderr is not None
        return proc, proc.stdout, proc.stderr, "as a process"

    @staticmethod
    def _start_warm(
        step: StepRun, env: dict[str, str], allowed: list[int], log: StepLog
    ) -> tuple[StepProcess, IO[str], IO[str], str] | None:
        """The step forked by the warm runner, when it is a ``sluice-step`` command of this environment and warm
        steps are on; None (run it as a process) otherwise, with a line saying why when the runner failed."""
        if not warm.enabled(env):
            return None
        script = warm.entry_script(step.command, env["PATH"])
        if script is None:
            return None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = warm.start_step(script, step.command, env, os.getcwd(), allowed, out_w, err_w, sluice_home())
        except Exception as exc:  # the runner never fails a step that would run as a process
            os.close(out_r)
            os.close(err_r)
            why = str(exc) if isinstance(exc, warm.Unavailable) else f"{type(exc).__name__}: {exc}"
            log.warning("warm runner unavailable (%s): running the step as a process", why)
            return None
        finally:
            os.close(out_w)  # the step holds its own copies: EOF comes when it (and its children) exit
            os.close(err_w)
        return proc, open(out_r, encoding=None), open(err_r, encoding=None), "in the warm runner"

    def _watch(self, proc: StepProcess, limit: int, timeout: int | None) -> tuple[int, FailureKind | None, str]:
        try:
            watched: psutil.Process | None = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:  # a warm step that already ended: its runner, not this process, reaped it
            watched = None
        started = time.monotonic()
        peak = 0
        while proc.poll() is None:
            try:
                rss = _tree_rss(watched) if watched is not None else 0
            except psutil.NoSuchProcess:
                rss = 0
            peak = max(peak, rss)
            if rss > limit:
                self._kill(proc)
                return peak, FailureKind.OUT_OF_MEMORY, f"resident memory reached {rss / 2**20:.0f} MiB"
            if timeout and time.monotonic() - started > timeout:
                self._kill(proc)
                return peak, FailureKind.TIMEOUT, f"still running after {timeout}s: stopped"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_SECONDS)  # returns the moment the step exits: no idle tail
        return peak, None, ""

    @staticmethod
    def _kill(proc: StepProcess) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait()

    def resume(self, step: StepRun, log: StepLog, context: Any, event: dict[str, Any]) -> LaunchResult:
        raise StepFailed("the local launcher never defers, so it has nothing to resume; check launcher.type")

    def on_kill(self) -> None:
        self._killed = True
        if self._proc and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill(self._proc)
            except ProcessLookupError:
                pass
