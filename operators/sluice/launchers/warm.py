"""The warm step runner: a fork server that has already imported what ``sluice-step`` steps import.

Why: every local step used to pay Python's start-up and its imports (1.35–1.67 s for the steps that load
scikit-learn, issue #29). The runner imports the heavy third-party modules once (never ``sluice_steps``: a child
imports the step package after the fork, so an edited step runs its new code) and forks one child per step.

Isolation per step is what a fresh process gets: the child starts a session of its own, is tied to the runner's
life (``PR_SET_PDEATHSIG``), is pinned to the step's CPUs, gets the step's environment, working directory and
stdout/stderr pipes (sent by the launcher over the socket), and sizes the already-loaded thread pools for its
CPUs (threadpoolctl). The launcher keeps watching it by pid exactly as a process it started: memory over the
process tree, timeout, kill of its process group. The runner kills a child whose launcher's connection drops (the
task was killed), so a killed worker still leaves no step behind.

One runner per (interpreter, ``sluice-step`` entry point, installed packages, user): the socket's name is a hash
of them, so an upgraded environment gets a new runner, and the old one exits once idle. The runner exits after
``SLUICE_WARM_IDLE_SECONDS`` (300) without a step, or when its socket file is removed. Anything that goes wrong
before a child starts raises :class:`Unavailable`: the launcher then runs the step as a plain process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import importlib
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sluice.errors import SluiceError
from sluice.lifetime import die_with_parent

# What the steps of sluice_steps import at module level (read from images/ml-steps/sluice_steps/*.py), scipy and
# threadpoolctl through scikit-learn. Missing ones are skipped: a step that needs one fails as it would cold.
WARM_IMPORTS = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.compute",
    "fsspec",
    "fsspec.core",
    "joblib",
    "scipy",
    "sklearn",
    "sklearn.datasets",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.neighbors",
    "sklearn.preprocessing",
    "sklearn.svm",
    "threadpoolctl",
)
ENTRY_POINT = "sluice-step"
ENV_SWITCH = "SLUICE_WARM_STEPS"
ENV_IDLE = "SLUICE_WARM_IDLE_SECONDS"
IDLE_SECONDS = 300.0
START_SECONDS = 60.0  # imports on a loaded laptop: a few seconds; a runner that takes longer is broken
REPLY_SECONDS = 15.0
CHECK_SECONDS = 1.0  # how often the runner looks at its socket file and its idle time
PR_SET_NAME = 15
SOCKET_PATH_MAX = 100  # sockaddr_un holds 108 bytes
WAIT_POLICY = "PASSIVE"
# Forked with one thread only: the pools these size start their threads at load time otherwise (OpenBLAS), and
# Arrow's jemalloc starts a background thread unless told not to. The child sizes the pools for its CPUs.
ZYGOTE_ENV = {
    # libgomp reads its wait policy once, when the runner imports scikit-learn: what the local launcher gives every
    # step (a spinning OpenMP thread starves the step beside it: a gradient-boosting candidate next to another step
    # took 45.7 s instead of ~10 s at 20 M rows before the runner had it). A step asking otherwise runs as a process.
    "OMP_WAIT_POLICY": WAIT_POLICY,
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
    "PYTHONUNBUFFERED": "1",
}


class Unavailable(SluiceError):
    """The warm runner cannot run this step (not started, gone, or refused it); the step has not started."""


def enabled(env: Mapping[str, str]) -> bool:
    """Whether warm steps are on for this environment: ``SLUICE_WARM_STEPS=0`` (or false/no/off) turns them off, and
    a step that sets another OpenMP wait policy than the runner's (loaded once, in the runner) runs as a process."""
    switched_off = env.get(ENV_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}
    own_policy = env.get("OMP_WAIT_POLICY", WAIT_POLICY).strip().upper() != WAIT_POLICY
    return sys.platform.startswith("linux") and not switched_off and not own_policy


def entry_script(command: Sequence[str], path: str) -> Path | None:
    """The ``sluice-step`` script of this interpreter's environment that ``command`` runs, else None: the runner
    runs steps in this interpreter, so only the entry point installed beside it qualifies."""
    if not command or Path(command[0]).name != ENTRY_POINT:
        return None
    found = shutil.which(command[0], path=path)
    if found is None:
        return None
    script = Path(found)
    return script if script.parent == Path(sys.executable).parent else None


def runner_key(script: Path) -> str:
    """Names the runner that may serve ``script``: changes with the interpreter, the entry point, the runner's own
    code, the user and any package installed or upgraded (the site-packages dist-info entries and their mtimes)."""
    digest = hashlib.sha256()
    own = [Path(__file__), Path(sys.modules[die_with_parent.__module__].__file__ or "")]
    for part in (sys.executable, str(script.resolve()), str(os.getuid()), *(str(p.stat().st_mtime_ns) for p in own)):
        digest.update(part.encode() + b"\0")
    for site in sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}):
        with contextlib.suppress(OSError), os.scandir(site) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith((".dist-info", ".egg-info", ".pth")):
                    digest.update(f"{entry.name}:{entry.stat().st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def runner_dir(home: Path) -> Path:
    """A directory only this user can enter, for the runner's socket: ``$SLUICE_HOME/warm``, else (the socket path
    would be too long for a Unix socket) ``$XDG_RUNTIME_DIR/sluice-warm`` or ``/tmp/sluice-warm-<uid>``."""
    candidates = [home / "warm"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "sluice-warm")
    candidates.append(Path("/tmp") / f"sluice-warm-{os.getuid()}")
    for directory in candidates:
        if len(str(directory)) + 22 <= SOCKET_PATH_MAX:
            return _private(directory)
    raise Unavailable(f"no directory for the runner's socket is short enough for a Unix socket ({candidates[0]})")


def stop_runners(home: Path) -> int:
    """End the runners whose sockets are in ``home``'s runner directory (``sluice down``, the end of ``sluice
    demo``): each sees its socket gone, finishes the steps it runs and exits, rather than idling until its
    timeout. Returns how many were told."""
    try:
        directory = runner_dir(home)
    except Unavailable:
        return 0
    if directory != home / "warm":  # a shared fallback directory: other homes' runners live there too
        return 0
    told = 0
    for sock in directory.glob("*.sock"):
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
            told += 1
    return told


def _private(directory: Path) -> Path:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
    except OSError as exc:
        raise Unavailable(f"cannot make the runner's directory {directory}: {exc}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise Unavailable(f"{directory} must be owned by this user with mode 0700 (chmod 700 it, or remove it)")
    return directory


class WarmStep:
    """A step the runner started, seen as the launcher sees a process: ``pid``, ``poll()``, ``wait()``,
    ``returncode``. The exit status comes over the socket; closing the socket makes the runner kill the step."""

    def __init__(self, sock: socket.socket, pid: int, rest: bytes, argv: Sequence[str]) -> None:
        self.pid = pid
        self.args = list(argv)
        self.returncode: int | None = None
        self.lost = False  # the runner went away without an exit status (its children die with it)
        self._code: int | None = None  # the status, once known; returncode follows when the reader is done
        self._sock = sock
        self._done_r, self._done_w = os.pipe()
        # A thread reads the exit status; poll() and wait() only look at a pipe, so they are safe to call from a
        # signal handler (on_kill) while the launcher's thread is inside wait().
        threading.Thread(target=self._await_exit, args=(rest,), daemon=True, name=f"warm-step-{pid}").start()

    def _await_exit(self, buffer: bytes) -> None:
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):
            while b"\n" not in buffer:
                chunk = self._sock.recv(4096)
                if not chunk:
                    break
                buffer += chunk
            if b"\n" in buffer:
                code = int(json.loads(buffer.split(b"\n", 1)[0])["exit"])
        if code is None:
            self.lost = True
            code = -signal.SIGKILL
        self._code = code
        os.write(self._done_w, b"x")
        # Last: poll() seeing the status is what lets close() close the pipe, so this thread must be done with it
        # (written to a closed descriptor, or to whatever file took its number, otherwise).
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            ready, _, _ = select.select([self._done_r], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self._code is not None  # set before the pipe was written: the reader is done with it
        self.returncode = self._code
        return self._code

    def close(self) -> None:
        """Hang up: a step still running is killed by the runner."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # close() alone waits for the reader thread's recv to return
        self._sock.close()
        if self.returncode is not None:
            for fd in (self._done_r, self._done_w):
                with contextlib.suppress(OSError):
                    os.close(fd)


def start_step(
    script: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    cpus: Sequence[int],
    stdout_fd: int,
    stderr_fd: int,
    home: Path,
) -> WarmStep:
    """Start ``argv`` (a ``sluice-step`` command) in the warm runner, starting the runner first if need be; the
    step writes to ``stdout_fd``/``stderr_fd``. Raises :class:`Unavailable` when the step could not be started."""
    directory = runner_dir(home)
    key = runner_key(script)
    sock = _connect_or_start(directory, key, script)
    try:
        request = json.dumps({"argv": [str(script), *argv[1:]], "env": dict(env), "cwd": cwd, "cpus": list(cpus)})
        data = request.encode()
        sock.settimeout(REPLY_SECONDS)
        socket.send_fds(sock, [len(data).to_bytes(8, "big") + data], [stdout_fd, stderr_fd])
        buffer = b""
        while b"\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise Unavailable("the runner hung up before starting the step")
            buffer += chunk
        line, rest = buffer.split(b"\n", 1)
        reply = json.loads(line)
        if "pid" not in reply:
            raise Unavailable(f"the runner refused the step: {reply.get('error', reply)}")
        sock.settimeout(None)
        return WarmStep(sock, int(reply["pid"]), rest, argv)
    except (OSError, ValueError) as exc:
        sock.close()
        raise Unavailable(f"talking to the runner failed: {exc}") from None
    except BaseException:
        sock.close()
        raise


def prestart(home: Path, path: str) -> bool:
    """Start this environment's runner in the background, so the first steps find it warm instead of each waiting
    ~1.2 s for its imports (issue #29: a run's first two shard steps paid it). A detached helper process starts it,
    not a thread here: the runner's start lock must not be held by a process that forks task processes (the
    embedded run, a Celery worker). Returns at once (the helper's parent exits after its fork; the runner's start
    goes on), False when warm steps are off or ``sluice-step`` (looked up on the steps' ``path``) is not installed
    beside this interpreter."""
    if not enabled(os.environ):
        return False
    script = entry_script([ENTRY_POINT], path)
    if script is None:
        return False
    code = (
        "import os, sys\n"
        "if os.fork():\n    os._exit(0)\n"  # the caller reaps this process at once; the helper is nobody's child
        "from sluice.launchers.warm import ensure_runner\nensure_runner(*sys.argv[1:])"
    )
    try:
        subprocess.run(
            [sys.executable, "-P", "-c", code, str(home), str(script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,  # a Ctrl-C meant for the run does not cut the runner's start short
            timeout=START_SECONDS,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return False  # the first step starts the runner itself, or says why it cannot
    return True


def ensure_runner(home: str, script: str) -> None:
    """The runner for ``script`` is serving when this returns (``prestart``'s helper): started unless it was."""
    with contextlib.suppress(Unavailable):  # the first step then says why, and runs as a process
        _connect_or_start(runner_dir(Path(home)), runner_key(Path(script)), Path(script)).close()


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot connect to the runner at {path}: {exc}") from None
    return sock


def _connect_or_start(directory: Path, key: str, script: Path) -> socket.socket:
    path = directory / f"{key}.sock"
    sock = _connect(path)
    if sock is not None:
        return sock
    with open(directory / f"{key}.lock", "a") as lock:  # two tasks starting at once start one runner
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)
        if sock is None:
            _start_runner(path, script)
            sock = _connect(path)
    if sock is None:
        raise Unavailable(f"the runner said it was ready but {path} does not accept connections")
    return sock


def _start_runner(path: Path, script: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a dead runner's socket
    log_path = path.with_suffix(".log")
    ready_r, ready_w = os.pipe()
    env = {**os.environ, **{k: v for k, v in ZYGOTE_ENV.items() if k != "JE_ARROW_MALLOC_CONF"}}
    env.setdefault("JE_ARROW_MALLOC_CONF", ZYGOTE_ENV["JE_ARROW_MALLOC_CONF"])
    idle = os.environ.get(ENV_IDLE, str(IDLE_SECONDS))
    code = "from sluice.launchers.warm import main; main()"
    args = ["--socket", str(path), "--ready-fd", str(ready_w), "--idle", idle, "--script", str(script)]
    try:
        with open(log_path, "wb") as log:
            # -P: no working directory on sys.path (a child gets the entry point's, as a console script would).
            intermediate = subprocess.Popen(
                [sys.executable, "-P", "-c", code, *args],
                pass_fds=(ready_w,),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd="/",
                start_new_session=True,
            )
        os.close(ready_w)
        intermediate.wait(timeout=START_SECONDS)  # it forks the runner and exits: the runner is nobody's child
        said = _read_line(ready_r, START_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"cannot start the runner: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(ready_w)
        os.close(ready_r)
    if said != "ready":
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
        raise Unavailable(f"the runner did not start: {said or (tail[0] if tail else 'no word from it')} ({log_path})")


def _read_line(fd: int, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    data = b""
    while b"\n" not in data and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").split("\n", 1)[0].strip()


# The runner's side.


class Runner:
    """The fork server's loop: one thread, ``select`` over the listening socket, each step's connection (a hang-up
    kills the step) and each child's pidfd (its exit is reported to its launcher)."""

    def __init__(self, listener: socket.socket, path: Path, idle: float, entry: str, script: Path) -> None:
        self.listener: socket.socket | None = listener
        self.path = path
        self.inode = path.stat().st_ino
        self.idle = idle
        self.entry = entry
        self.script = script
        self.own_pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.children: dict[int, tuple[socket.socket | None, int]] = {}  # pid: (connection, pidfd)
        self.last_active = time.monotonic()

    def serve(self) -> None:
        while self.listener is not None or self.children:
            watched: list[Any] = [conn for conn, _ in self.children.values() if conn is not None]
            watched += [pidfd for _, pidfd in self.children.values()]
            if self.listener is not None:
                watched.append(self.listener)
            ready, _, _ = select.select(watched, [], [], CHECK_SECONDS)
            for item in ready:
                if item is self.listener:
                    self._accept()
                elif isinstance(item, socket.socket):
                    self._hung_up(item)
                else:
                    self._reap(item)
            self._check_socket_file()

    def _check_socket_file(self) -> None:
        if self.listener is None:
            return
        try:
            gone = self.path.stat().st_ino != self.inode
        except FileNotFoundError:
            gone = True
        idle = not self.children and time.monotonic() - self.last_active > self.idle
        if gone or idle:
            if idle and not gone:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            while self.listener is not None and select.select([self.listener], [], [], 0)[0]:
                self._accept()  # a launcher that connected before the unlink still gets its step run
            self.listener.close()
            self.listener = None

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_active = time.monotonic()
        fds: list[int] = []
        try:
            conn.settimeout(REPLY_SECONDS)
            request, fds = _receive(conn)
            threads = len(os.listdir("/proc/self/task"))
            if threads != 1:
                raise Unavailable(f"the runner has {threads} threads: forking it would not be safe")
            pid, pidfd = self._fork(request, fds, conn)
        except Exception as exc:  # nothing started: the launcher falls back to a process, told why
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
            conn.close()
            return
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.children[pid] = (conn, pidfd)
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            conn.setblocking(True)
        except OSError:
            self._hung_up(conn)  # the launcher is gone already: so is its step

    def _fork(self, request: dict[str, Any], fds: list[int], conn: socket.socket) -> tuple[int, int]:
        if len(fds) != 2:
            raise ValueError(f"expected the step's stdout and stderr, got {len(fds)} descriptors")
        started_r, started_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(started_r)
            inherited = [c.fileno() for c, _ in self.children.values() if c is not None]
            inherited += [pidfd for _, pidfd in self.children.values()]
            inherited.append(conn.fileno())
            if self.listener is not None:
                inherited.append(self.listener.fileno())
            _child(self, request, fds[0], fds[1], started_w, inherited)
        os.close(started_w)
        try:
            pidfd = os.pidfd_open(pid)
            try:
                # The reply waits for the child's new session, so the launcher can kill its group at once.
                said = _read_line(started_r, REPLY_SECONDS)
                if said != "started":
                    raise RuntimeError(f"the step's process did not start: {said or 'it died'}")
            except BaseException:
                os.close(pidfd)
                raise
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # never a step the launcher would also run as a process
            os.waitpid(pid, 0)
            raise
        finally:
            os.close(started_r)
        return pid, pidfd

    def _hung_up(self, conn: socket.socket) -> None:
        try:
            if conn.recv(1, socket.MSG_DONTWAIT):
                return  # the launcher says nothing after its request: ignore
        except BlockingIOError:
            return
        except OSError:
            pass
        for pid, (owner, pidfd) in list(self.children.items()):
            if owner is conn:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # the task is gone: so is its step
                self.children[pid] = (None, pidfd)
        conn.close()

    def _reap(self, pidfd: int) -> None:
        pid = next(p for p, (_, fd) in self.children.items() if fd == pidfd)
        conn, _ = self.children.pop(pid)
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        self.last_active = time.monotonic()
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 65536, 2)
    if len(data) < 8:
        raise ValueError("short request")
    size = int.from_bytes(data[:8], "big")
    body = data[8:]
    while len(body) < size:
        chunk = conn.recv(min(65536, size - len(body)))
        if not chunk:
            raise ValueError("the launcher hung up mid-request")
        body += chunk
    return json.loads(body), list(fds)


def _child(
    runner: Runner, request: dict[str, Any], out_fd: int, err_fd: int, started: int, inherited: list[int]
) -> NoReturn:
    """In the forked child: become the step's process, as a fresh ``sluice-step`` process would be, and run it."""
    code = 70  # EX_SOFTWARE: the child could not even set itself up
    try:
        os.setsid()
        die_with_parent()
        _name_process(runner.script.name)
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in {devnull, out_fd, err_fd} - {0, 1, 2}:
            os.close(fd)
        os.write(started, b"started\n")  # from here on, what goes wrong is the step's failure, on its stderr
        os.close(started)
        os.sched_setaffinity(0, request["cpus"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        _fresh_streams()
        _fresh_interpreter_state(runner, len(request["cpus"]))
        sys.argv = list(request["argv"])
        module_name, _, attr = runner.entry.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        result = target()
        code = 0 if result is None else int(result)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _name_process(name: str) -> None:
    """Show the child as the step in ``ps``/``top`` (its command line stays the runner's: there is no exec)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _fresh_streams() -> None:
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding=encoding, line_buffering=True, write_through=unbuffered
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False),
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )


def _fresh_interpreter_state(runner: Runner, cpus: int) -> None:
    """What a fresh interpreter would take from the step's environment, set again after the fork: sys.path (the
    entry point's directory, then the step's PYTHONPATH), fsspec's config from ``FSSPEC_*``, a fresh numpy seed
    (forked children would otherwise share one random stream), thread pools sized for the step's CPUs."""
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    base = [p for p in sys.path if p not in runner.own_pythonpath]
    sys.path[:] = [str(runner.script.parent), *pythonpath, *base]
    importlib.invalidate_caches()
    if "fsspec.config" in sys.modules:
        config: Any = sys.modules["fsspec.config"]
        config.conf.clear()
        config.conf_dir = os.environ.get("FSSPEC_CONFIG_DIR", os.path.join(os.path.expanduser("~"), ".config/fsspec"))
        config.set_conf_files(config.conf_dir, config.conf)
        config.set_conf_env(config.conf)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "threadpoolctl" in sys.modules:
        sys.modules["threadpoolctl"].threadpool_limits(limits=cpus)


def _warm_up() -> None:
    os.close(os.pidfd_open(os.getpid()))  # Linux 5.3+: how the runner waits for its children; else do not start
    for name in WARM_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if "sluice_steps" in sys.modules:
        raise RuntimeError("the runner imported sluice_steps: edited steps would run stale code")


def _entry(script: Path) -> str:
    from importlib.metadata import entry_points

    found = list(entry_points(group="console_scripts", name=script.name))
    if not found:
        raise RuntimeError(f"no console script {script.name!r} is installed in {sys.prefix}")
    return str(found[0].value)


def main(argv: list[str] | None = None) -> None:
    """The runner process: fork once so the launcher that started it is not its parent, import, listen, serve."""
    parser = argparse.ArgumentParser(description="Sluice's warm step runner (started by the local launcher)")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--idle", type=float, default=IDLE_SECONDS)
    parser.add_argument("--script", type=Path, required=True)
    args = parser.parse_args(argv)
    if os.fork() > 0:
        os._exit(0)
    try:
        _warm_up()
        entry = _entry(args.script)
        temporary = args.socket.with_name(f"{args.socket.name}.{os.getpid()}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(temporary))
        listener.listen(64)
        os.replace(temporary, args.socket)  # clients only ever see a socket that is listening
        runner = Runner(listener, args.socket, args.idle, entry, args.script)
    except Exception as exc:
        os.write(args.ready_fd, f"error: {type(exc).__name__}: {exc}\n".encode())
        raise
    os.write(args.ready_fd, b"ready\n")
    os.close(args.ready_fd)
    print(f"warm runner {os.getpid()} serving {args.socket} (entry point {entry})", flush=True)
    runner.serve()
    print(f"warm runner {os.getpid()} exits: idle or its socket file is gone", flush=True)
