"""The stack stops what it started and nothing else: processes are known by pid *and* start time."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sluice.stack.processes import Proc, spawn, stop

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
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    proc = spawn("stubborn", "worker", stubborn, {}, tmp_path / "stubborn.log")
    import time

    time.sleep(0.5)  # let it install its handler
    assert stop(proc, signal.SIGTERM, timeout=1) == "killed after 1 s"
    assert not proc.alive()
