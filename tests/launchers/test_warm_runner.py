"""The local launcher's warm step runner (sluice.launchers.warm), with real processes: a ``sluice-step`` step forked
by the runner behaves as the same step started as a process (output, exit code, metrics, memory limit, timeout,
kill), picks up edited step code, and never outlives the task that launched it.

Most tests run a stand-in step package (``sluice_steps`` on the step's PYTHONPATH, which a fresh ``sluice-step``
process and the runner's child both honour) so a step can allocate, sleep or report what it sees.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from sluice.contract import step_env
from sluice.launchers.base import FailureKind, LaunchResult, StepRun
from sluice.launchers.local import LocalLauncher, cores_for
from sluice.platform import Profile, load_platform

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm runner is Linux only")

STAND_IN = """
import os, sys, time

VERSION = "one"


def run():
    args = sys.argv[1:]
    if args[0] == "hello":
        print("hello from", VERSION)
        print("something went wrong", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)
    if args[0] == "whoami":
        from threadpoolctl import threadpool_info

        threads = sorted({pool["num_threads"] for pool in threadpool_info()})
        seen = [VERSION, os.getppid(), sorted(os.sched_getaffinity(0)), threads, os.environ.get("MARK", "-")]
        print("|".join(str(part) for part in seen))
    if args[0] == "hog":
        hog = b"x" * (int(args[1]) * 2**20)
        time.sleep(60)
    if args[0] == "sleep":
        print("sleeping", flush=True)
        time.sleep(float(args[1]))
    sys.stdout.flush()
    os._exit(0)
"""

LAUNCH = """
import json, logging, sys
from sluice.launchers.base import StepRun
from sluice.launchers.local import LocalLauncher
from sluice.platform import Profile, load_platform

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
env, command = json.loads(sys.argv[1]), sys.argv[2:]
step = StepRun("d", "t", "r", 1, -1, "ml-steps", command, env, "default", Profile(cpu="1", memory="1Gi"), "/tmp")
result = LocalLauncher(load_platform()).run(step, logging.getLogger("launch"))
print("RESULT", result.exit_code, result.failure)
"""


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A SLUICE_HOME of the test's own, short enough for a Unix socket: a runner of its own. Removing its socket
    at the end makes the runner exit."""
    directory = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))
    monkeypatch.setenv("SLUICE_HOME", str(directory))
    monkeypatch.setenv("SLUICE_WARM_IDLE_SECONDS", "60")
    monkeypatch.delenv("SLUICE_WARM_STEPS", raising=False)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """A stand-in ``sluice_steps`` package; returns its module to edit."""
    package = tmp_path / "stand-in" / "sluice_steps"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STAND_IN)
    return package / "__main__.py"


def step_run(command: list[str], env: dict[str, str], profile: Profile | None = None) -> StepRun:
    profile = profile or Profile(cpu="1", memory="1Gi")
    return StepRun("d", "t", "r", 1, -1, "ml-steps", command, env, "default", profile, "/tmp")


def launch(step: StepRun, launcher: LocalLauncher | None = None) -> tuple[LaunchResult, list[str]]:
    lines = Lines()
    log = logging.getLogger(f"warm-test-{id(lines)}")
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    log.propagate = False
    result = (launcher or LocalLauncher(load_platform())).run(step, log)
    return result, lines.lines


def env_of(stand_in: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(stand_in.parent.parent), **extra}


def step_output(lines: list[str]) -> list[str]:
    return [line.removeprefix("[step] ") for line in lines if line.startswith("[step] ")]


def started_how(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith("step running "))


def whoami(stand_in: Path, **extra: str) -> tuple[str, int, list[int], list[int], str]:
    result, lines = launch(step_run(["sluice-step", "whoami"], env_of(stand_in, **extra)))
    assert result.succeeded, (result, lines)
    version, parent, cpus, threads, mark = step_output(lines)[0].split("|")
    return version, int(parent), json.loads(cpus), json.loads(threads), mark


def gone(pid: int, within: float = 30) -> bool:
    try:
        psutil.Process(pid).wait(timeout=within)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def test_a_real_step_gives_the_same_exit_code_outputs_and_metrics_warm_and_as_a_process(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("a,b\n1,x\n2,y\n3,z\n")
    runs = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("SLUICE_WARM_STEPS", mode)
        prefix = tmp_path / f"mode-{mode}"
        env = step_env({}, {"data": str(prefix / "data.parquet")}, {"source": str(source)}, str(prefix))
        result, lines = launch(step_run(["sluice-step", "ingest"], env))
        runs[mode] = (result.exit_code, json.loads((prefix / "_result.json").read_text())["metrics"], lines)
        assert pq.read_table(prefix / "data.parquet").to_pylist() == [
            {"a": 1, "b": "x"},
            {"a": 2, "b": "y"},
            {"a": 3, "b": "z"},
        ]
    assert runs["0"][:2] == runs["1"][:2] == (0, {"rows": 3, "columns": 2})
    assert "as a process" in started_how(runs["0"][2])
    assert "in the warm runner" in started_how(runs["1"][2])


def test_an_unknown_step_fails_with_the_same_output_and_code_warm_and_as_a_process(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("SLUICE_WARM_STEPS", mode)
        result, lines = launch(step_run(["sluice-step", "no_such_step"], {}))
        seen[mode] = (result.exit_code, result.failure, step_output(lines))
    assert seen["0"] == seen["1"]
    assert seen["1"][:2] == (64, FailureKind.UNKNOWN_STEP)


def test_a_warm_steps_stdout_stderr_and_exit_code_reach_the_launcher(home: Path, stand_in: Path) -> None:
    result, lines = launch(step_run(["sluice-step", "hello"], env_of(stand_in)))
    assert "in the warm runner" in started_how(lines)
    assert sorted(step_output(lines)) == ["hello from one", "something went wrong"]  # two pipes: any order
    assert (result.exit_code, result.failure) == (3, FailureKind.EXIT)
    assert result.message.endswith("something went wrong")


def test_a_warm_step_over_its_memory_limit_is_killed_as_out_of_memory(home: Path, stand_in: Path) -> None:
    profile = Profile(cpu="1", memory="500Mi")
    result, lines = launch(step_run(["sluice-step", "hog", "800"], env_of(stand_in), profile))
    assert "in the warm runner" in started_how(lines)
    assert result.failure is FailureKind.OUT_OF_MEMORY, (result, lines)
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 500 * 2**20


def test_a_warm_step_past_its_timeout_is_stopped(home: Path, stand_in: Path) -> None:
    profile = Profile(cpu="1", memory="1Gi", timeout_seconds=1)
    result, lines = launch(step_run(["sluice-step", "sleep", "120"], env_of(stand_in), profile))
    assert "in the warm runner" in started_how(lines)
    assert result.failure is FailureKind.TIMEOUT, (result, lines)
    pid = int(started_how(lines).rsplit("pid ", 1)[1].rstrip(")"))
    assert gone(pid)


def test_on_kill_stops_a_warm_step(home: Path, stand_in: Path) -> None:
    launcher = LocalLauncher(load_platform())
    outcome: list[tuple[LaunchResult, list[str]]] = []
    runner = threading.Thread(
        target=lambda: outcome.append(launch(step_run(["sluice-step", "sleep", "120"], env_of(stand_in)), launcher))
    )
    runner.start()
    deadline = time.monotonic() + 60
    while launcher._proc is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launcher._proc is not None, "the step never started"
    launcher.on_kill()
    runner.join(timeout=60)
    result, lines = outcome[0]
    assert "in the warm runner" in started_how(lines)
    assert result.failure is FailureKind.KILLED, (result, lines)


def test_a_killed_launching_process_leaves_no_warm_step_running(home: Path, stand_in: Path, tmp_path: Path) -> None:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    task = subprocess.Popen(
        [sys.executable, str(script), json.dumps(env_of(stand_in)), "sluice-step", "sleep", "120"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert task.stdout is not None
    started = next(line for line in task.stdout if line.startswith("step running "))
    assert "in the warm runner" in started
    step_pid = int(started.rsplit("pid ", 1)[1].strip().rstrip(")"))
    assert psutil.Process(step_pid).is_running()
    task.kill()  # the task process is SIGKILLed: its connection to the runner drops
    task.wait()
    assert gone(step_pid), "the step outlived the task that launched it"


def test_an_edited_step_runs_its_new_code_in_the_same_runner(home: Path, stand_in: Path) -> None:
    version, runner, *_ = whoami(stand_in)
    stand_in.write_text(STAND_IN.replace('VERSION = "one"', 'VERSION = "two-edited"'))
    edited, same_runner, *_ = whoami(stand_in)
    assert (version, edited) == ("one", "two-edited")
    assert same_runner == runner != os.getpid()


def test_two_launchers_starting_at_once_share_one_runner(home: Path, stand_in: Path, tmp_path: Path) -> None:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tasks = [
        subprocess.Popen(
            [sys.executable, str(script), json.dumps(env_of(stand_in)), "sluice-step", "whoami"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [task.communicate(timeout=120)[0] for task in tasks]
    parents = set()
    for output in outputs:
        assert "RESULT 0 None" in output, output
        assert "in the warm runner" in output, output
        parents.add(next(line for line in output.splitlines() if line.startswith("[step] one|")).split("|")[1])
    assert len(parents) == 1, outputs
    assert len(list((home / "warm").glob("*.sock"))) == 1


def test_sluice_warm_steps_0_runs_the_step_as_a_process(home: Path, stand_in: Path) -> None:
    _, parent, *_ = whoami(stand_in, SLUICE_WARM_STEPS="0")
    assert parent == os.getpid()
    assert not (home / "warm").exists()


def test_a_prestarted_runner_serves_the_first_step(home: Path, stand_in: Path) -> None:
    """An embedded run or a Celery worker starts the runner before its first step (``warm.prestart``, a detached
    helper process): the first step forks from that runner instead of starting one."""
    from sluice.launchers import warm

    assert warm.prestart(home, str(Path(sys.executable).parent))
    deadline = time.monotonic() + 60
    logs: list[Path] = []
    while not (logs and "serving" in logs[0].read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
        logs = list((home / "warm").glob("*.log"))
    runner = int(logs[0].read_text().split()[2])  # "warm runner <pid> serving <socket> ..."
    _, parent, *_ = whoami(stand_in)
    assert parent == runner


def test_no_runner_is_prestarted_with_warm_steps_off(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.launchers import warm

    monkeypatch.setenv("SLUICE_WARM_STEPS", "0")
    assert not warm.prestart(home, str(Path(sys.executable).parent))
    assert not (home / "warm").exists()


def test_a_warm_step_gets_the_launchers_cores_thread_pools_and_its_env(home: Path, stand_in: Path) -> None:
    cpus = min(2, len(os.sched_getaffinity(0)))
    step = step_run(["sluice-step", "whoami"], env_of(stand_in, MARK="marked"), Profile(cpu=str(cpus)))
    _, lines = launch(step)
    assert "in the warm runner" in started_how(lines), lines
    _, _, affinity, threads, mark = step_output(lines)[0].split("|")
    assert json.loads(affinity) == cores_for(step, cpus)
    assert json.loads(threads) == [cpus]  # the runner itself loaded them with one thread each
    assert mark == "marked"


def test_a_runner_that_cannot_start_falls_back_to_a_process_saying_why(home: Path, stand_in: Path) -> None:
    (home / "warm").mkdir(mode=0o755)
    os.chmod(home / "warm", 0o755)  # not private: the runner's socket must not live there
    result, lines = launch(step_run(["sluice-step", "hello"], env_of(stand_in)))
    assert any(line.startswith("warm runner unavailable (") and "0700" in line for line in lines), lines
    assert "as a process" in started_how(lines)
    assert result.exit_code == 3


def test_a_runner_exits_when_its_socket_file_is_removed_as_sluice_down_and_the_demo_do(
    home: Path, stand_in: Path
) -> None:
    from sluice.launchers.warm import stop_runners

    _, runner, *_ = whoami(stand_in)
    assert stop_runners(home) == 1  # removes the home's runner sockets
    assert gone(runner), "the runner outlived its socket file"
    assert stop_runners(home) == 0


def test_a_hung_up_connection_kills_the_step_but_not_the_runner(home: Path, stand_in: Path) -> None:
    from sluice.launchers import warm

    script = warm.entry_script(["sluice-step"], str(Path(sys.executable).parent))
    assert script is not None
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    env = {**os.environ, **env_of(stand_in)}
    step = warm.start_step(script, ["sluice-step", "sleep", "120"], env, "/", [0], out_w, err_w, home)
    for fd in (out_w, err_w):
        os.close(fd)
    with os.fdopen(out_r) as out:
        assert out.readline() == "sleeping\n"
    runner = psutil.Process(step.pid).ppid()
    step.close()
    assert gone(step.pid)
    assert psutil.Process(runner).is_running()
    os.close(err_r)


def test_the_runner_loads_openmp_with_the_passive_wait_policy_steps_get(home: Path, stand_in: Path) -> None:
    """libgomp reads OMP_WAIT_POLICY once, when the runner imports scikit-learn: a spinning policy there would
    starve the step beside every warm step (the launcher gives each step PASSIVE)."""
    _, runner, *_ = whoami(stand_in)
    assert psutil.Process(runner).environ().get("OMP_WAIT_POLICY") == "PASSIVE"


def test_a_step_asking_for_another_openmp_wait_policy_runs_as_a_process(home: Path, stand_in: Path) -> None:
    _, lines = launch(step_run(["sluice-step", "hello"], env_of(stand_in, OMP_WAIT_POLICY="ACTIVE")))
    assert "as a process" in started_how(lines)


def test_a_warm_steps_status_shows_only_once_its_reader_is_done_with_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher closes a step's status pipe once ``poll()`` shows the status, so the thread that reads it must
    have written to the pipe by then (it once wrote after: EBADF, or into whatever file had taken that number)."""
    import socket

    from sluice.launchers import warm

    ours, runner = socket.socketpair()
    real_write = os.write
    status_when_written: list[int | None] = []

    def write(fd: int, data: bytes) -> int:
        if fd == step._done_w:
            status_when_written.append(step.returncode)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    step = warm.WarmStep(ours, 12345, b"", ["sluice-step", "x"])
    runner.sendall(b'{"exit": 3}\n')
    assert step.wait(timeout=10) == 3
    assert step.poll() == 3
    step.close()
    runner.close()
    assert status_when_written == [None]


def test_a_step_that_ended_and_was_reaped_before_the_launcher_looks_is_no_launcher_error() -> None:
    """A warm step's parent is the runner: a step that ends at once can be reaped before the launcher watches its
    pid (psutil then finds no such process). The watch ends on the step's exit status, not on that."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # reaped: its pid names no process any more
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(done.pid)
    assert LocalLauncher(load_platform())._watch(done, limit=2**30, timeout=None) == (0, None, "")
