"""Wake a task's supervisor the moment its task process exits, so the worker slot frees at once.

Airflow's task supervisor (in each Celery pool process) waits in ``select()`` on the task process's
sockets, for at most ``[workers] min_heartbeat_interval`` seconds at a time. A task process closes its
sockets just before it exits: when the supervisor sees the sockets close but the process is not reaped
yet, it selects again with nothing left to wake it and sleeps the whole interval (1 s with Sluice's
tuning, 5 s stock) while the worker slot stays taken. Measured on the bench: about a quarter of no-op
tasks held their slot ~1 s longer than they ran.

With ``SLUICE_WORKER_EXIT_WAKEUP`` (the chart's ``tuning.workerExitWakeup``) the supervisor's selector also
watches a Linux pidfd of the task process (``os.pidfd_open``, Linux ≥ 5.3), which becomes readable when the
process exits; the loop then reaps it at once. ``sluice.worker.patches`` installs it at worker start, only
where pidfds work and the supervisor's symbols check out (``sluice.compat``); elsewhere Airflow's loop is left as is.
"""

from __future__ import annotations

import contextlib
import os
import selectors
from typing import Any

from sluice import compat
from sluice.worker.settings import env_flag
from sluice.worker.supervisor_patch import SupervisorPatch

ENV = "SLUICE_WORKER_EXIT_WAKEUP"


def enabled(value: str | None = None) -> bool:
    return env_flag(ENV, "tuning.workerExitWakeup", value)


class ExitWatch:
    """A pidfd registered in a supervisor's selector the way Airflow registers its sockets.

    The selector's ``data`` is Airflow's (read handler, on-close) pair: the handler says there is nothing
    more to read, so Airflow's loop calls on-close (we unregister) and then ``close()``.
    """

    def __init__(self, pid: int, selector: selectors.BaseSelector) -> None:
        self.fd: int | None = os.pidfd_open(pid)
        self.selector = selector
        selector.register(self, selectors.EVENT_READ, (self._exited, self._unregister))

    def fileno(self) -> int:
        if self.fd is None:
            raise ValueError("pidfd already closed")
        return self.fd

    @staticmethod
    def _exited(_: object) -> bool:
        return False

    def _unregister(self, _: object = None) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self)

    def close(self) -> None:
        self._unregister()
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def watch_exit(supervisor: Any) -> ExitWatch | None:
    """Watch ``supervisor``'s task process from its selector; None where pidfds do not exist."""
    try:
        return ExitWatch(supervisor.pid, supervisor.selector)
    except (AttributeError, OSError):  # no os.pidfd_open (not Linux), or the process is already reaped
        return None


def platform_problem() -> str | None:
    """Why this machine cannot watch a process exit through a pidfd (not Linux, or a kernel older than 5.3)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except AttributeError:
        return "os.pidfd_open does not exist here (Linux only)"
    except OSError as exc:
        return f"os.pidfd_open fails here ({exc}); it needs Linux 5.3 or later"
    return None


def _monitor_subprocess(self: Any) -> Any:
    watch = watch_exit(self)
    try:
        return PATCH.original(self)  # type: ignore[misc]
    finally:
        if watch is not None:
            watch.close()


PATCH = SupervisorPatch(compat.Feature.EXIT_WAKEUP, _monitor_subprocess)


install = PATCH.install
uninstall = PATCH.uninstall
