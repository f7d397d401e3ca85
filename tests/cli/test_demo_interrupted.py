"""Ctrl-C on `sluice demo` (tasks side by side through the LocalExecutor) ends it, and leaves no task behind.

A terminal's Ctrl-C is a SIGINT to the whole foreground process group: here the demo is started in a group of its
own and the test sends the SIGINT to that group once a step is running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow  # a demo started and interrupted (~30 s)


WARM_RUNNER = "sluice.launchers.warm"


def started_by(home: Path) -> list[psutil.Process]:
    """Every process the demo in ``home`` started, found by that home in its environment (an orphan has lost
    its parent link), but the warm step runner itself: it is shared, and ends on its own when idle. The steps it
    forks (same command line, a runner for a parent) are kept."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("SLUICE_HOME") != str(home):
                continue
            parent = proc.parent()
            is_runner = WARM_RUNNER in " ".join(proc.info["cmdline"] or []) and not (
                parent is not None and WARM_RUNNER in " ".join(parent.cmdline())
            )
            if not is_runner:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def is_step(proc: psutil.Process) -> bool:
    try:
        return "sluice-step" in " ".join(proc.cmdline()) or WARM_RUNNER in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


@pytest.fixture
def home() -> Iterator[Path]:
    """A SLUICE_HOME short enough for the warm runner's socket to live in it ($SLUICE_HOME/warm). Under a longer one
    (pytest-xdist's tmp_path adds popen-gwN/) the socket goes to the shared /tmp/sluice-warm-<uid>, where a runner
    another test started (same key, another home) would run this demo's steps: outside ``started_by(home)``."""
    directory = Path(tempfile.mkdtemp(prefix="sluice-int-", dir="/tmp"))
    yield directory / "home"
    shutil.rmtree(directory, ignore_errors=True)


def test_ctrl_c_stops_the_demo_and_every_task_it_started(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))}
    env |= {"SLUICE_HOME": str(home), "COLUMNS": "200", "SLUICE_PARALLELISM": "2"}
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "sluice"), "demo", "sharded_training"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's foreground job has it
    )
    try:
        deadline = time.monotonic() + 240
        while not any(is_step(proc) for proc in started_by(home)):
            assert demo.poll() is None, demo.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no step started within 240 s"
            time.sleep(0.2)
        os.killpg(demo.pid, signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode != 0, output[-3000:]
    gone = time.monotonic() + 15
    while (left := started_by(home)) and time.monotonic() < gone:
        time.sleep(0.2)
    assert not left, [" ".join(proc.cmdline()) for proc in left]
