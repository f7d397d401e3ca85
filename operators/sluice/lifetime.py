"""Nothing a task started outlives it: a task process dies with the worker process that supervises it, and a
step process with its task.

Airflow starts each task in a process of its own process group (so a kill of the worker's group misses it), and
the local launcher starts each step in a session of its own. Without a tie, a SIGKILLed worker's task and step
processes are re-parented to init and run to the end while the scheduler retries the task: two tries of one
task at once, two writers of the same outputs. ``PR_SET_PDEATHSIG`` is that tie: the kernel sends the process
SIGKILL the moment its parent dies. Linux only; elsewhere a no-op (and ``setpriv`` absent: steps run untied).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys

PR_SET_PDEATHSIG = 1
SETPRIV = shutil.which("setpriv")  # util-linux: sets the signal, then execs the step (a vfork-friendly spawn)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (immediately, when it already has)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and the call: act as the signal would have
            os.kill(os.getpid(), signal.SIGKILL)


def tied_to_this_process(argv: list[str]) -> list[str]:
    """``argv`` started so that it dies when the process that starts it dies (``setpriv --pdeathsig KILL``)."""
    if SETPRIV is None or not sys.platform.startswith("linux"):
        return argv
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
