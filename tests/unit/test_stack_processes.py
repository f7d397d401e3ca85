"""The stack stops what it started and nothing else: processes are known by pid *and* start time."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sluice.stack.processes import Proc, spawn, stop

from tests.support.waiting import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def stranger() -> subprocess.Popen:
    """A process the stack did not start."""
    proc = subprocess.Popen(SLEEPER)
    yield proc
    proc.kill()
    proc.wait()


def test_a_recycled_pid_is_not_ours(stranger: subprocess.Popen, tmp_path: Path) -> None:
    recorded = Proc("worker default-1", "worker", stranger.pid, create_time=1.0, log=str(tmp_path / "log"))
    assert not recorded.alive()
    assert stop(recorded, signal.SIGTERM, timeout=1) == "not running"
    assert stranger.poll() is None


def test_stop_ends_a_process_we_started(tmp_path: Path) -> None:
    proc = spawn("sleeper", "worker", SLEEPER, {}, tmp_path / "sleeper.log")
    assert proc.alive()
    assert stop(proc, signal.SIGTERM, timeout=10) == "stopped"
    assert not proc.alive()


def test_stop_kills_the_group_after_the_timeout(tmp_path: Path) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring SIGTERM', flush=True); "
        "time.sleep(60)",
    ]
    log = tmp_path / "stubborn.log"
    proc = spawn("stubborn", "worker", stubborn, {}, log)
    wait_until(lambda: "ignoring SIGTERM" in log.read_text(), "the process to ignore SIGTERM")
    assert stop(proc, signal.SIGTERM, timeout=1) == "killed after 1 s"
    assert not proc.alive()


# A main process that starts a child in its own process group (as a Celery worker starts its log server),
# prints the child's pid, then waits.
PARENT_WITH_CHILD = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(c.pid, flush=True); time.sleep(60)",
]


def _child_of(proc, log: Path) -> int:
    return int(wait_until(lambda: log.read_text().strip(), "the child to start").splitlines()[0])


def test_what_a_killed_component_leaves_behind_is_cleared(tmp_path: Path) -> None:
    """SIGKILL to the main process alone leaves its children running (an orphaned log server holds its port);
    clear_group ends them, as a container's processes end with it."""
    import os

    import psutil
    from sluice.stack.processes import clear_group, wait_gone

    log = tmp_path / "parent.log"
    proc = spawn("worker default-1", "worker", PARENT_WITH_CHILD, {}, log)
    child = _child_of(proc, log)
    os.kill(proc.pid, signal.SIGKILL)
    assert wait_gone(proc, 10)
    assert psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
    clear_group(proc)
    psutil.Process(child).wait(timeout=10)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_stop_leaves_no_child_of_the_group_behind(tmp_path: Path) -> None:
    import psutil

    log = tmp_path / "parent.log"
    proc = spawn("scheduler", "scheduler", PARENT_WITH_CHILD, {}, log)
    child = _child_of(proc, log)
    assert stop(proc, signal.SIGTERM, timeout=10) == "stopped"
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(child).wait(timeout=10)
        psutil.Process(child).status()


def test_the_last_log_line_is_the_exit_reason(tmp_path: Path) -> None:
    from sluice.stack.processes import last_line

    log = tmp_path / "api-server.log"
    log.write_text("starting\nOSError: [Errno 98] Address already in use\n\n")
    assert last_line(log) == "OSError: [Errno 98] Address already in use"
    assert last_line(tmp_path / "missing.log") == ""


# A supervisor that restarted a worker: the worker is its child (in a session of its own, as `spawn` starts every
# component), and the worker's pool (running tasks) its grandchild. Each answers SIGUSR1 by writing a file named by
# its pid; the supervisor prints the worker's and the pool's pids once both answer.
SUPERVISED_TREE = """
import os, signal, subprocess, sys
role, answers = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGUSR1, lambda *_: open(os.path.join(answers, str(os.getpid())), "w").close())
if role == "supervisor":
    worker = subprocess.Popen(
        [sys.executable, __file__, "worker", answers], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    print(worker.pid, worker.stdout.readline().strip(), flush=True)
elif role == "worker":
    pool = subprocess.Popen([sys.executable, __file__, "pool", answers], stdout=subprocess.PIPE, text=True)
    print(pool.stdout.readline().strip(), flush=True)
else:
    print(os.getpid(), flush=True)
while True:
    signal.pause()
"""


def test_stopping_the_supervisor_spares_a_restarted_workers_whole_tree(tmp_path: Path) -> None:
    """`sluice down` stops the supervisor first: the worker it restarted, and that worker's pool processes running
    tasks, are stopped later in their own turn (warmly), not killed as the supervisor's leftovers."""
    import contextlib
    import os

    import psutil

    script, answers, log = tmp_path / "tree.py", tmp_path / "answers", tmp_path / "supervisor.log"
    script.write_text(SUPERVISED_TREE)
    answers.mkdir()
    proc = spawn("supervisor", "supervisor", [sys.executable, str(script), "supervisor", str(answers)], {}, log)
    worker, pool = (int(pid) for pid in wait_until(lambda: log.read_text().split(), "the worker and its pool"))
    try:
        assert stop(proc, signal.SIGTERM, timeout=10, spare=frozenset({worker})) == "stopped"
        # Alive means answering: a process signalled to die never handles a later signal, so no wait can pass by luck.
        for pid in (worker, pool):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        wait_until(
            lambda: {p.name for p in answers.iterdir()} == {str(worker), str(pool)},
            "the restarted worker's tree, left alone, to answer",
            timeout=15,
        )
    finally:
        for pid in (pool, worker):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
