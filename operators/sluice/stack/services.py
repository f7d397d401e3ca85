"""PostgreSQL and Redis for the local stack: the servers at the given URLs, else throwaway ones.

A throwaway server runs from the binaries on the PATH (or Debian's ``/usr/lib/postgresql/*/bin``) with its
data under the stack's home, so ``sluice down`` + ``sluice up`` keep the metadata and the queues.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import redis

from sluice.stack.errors import StackError
from sluice.stack.processes import Proc, spawn

STARTUP_TIMEOUT = 60.0


@dataclass
class Endpoint:
    url: str
    proc: Proc | None  # set when the stack started the server (``down`` stops it)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Nothing listens on ``host:port`` (so a component started there will not die on "address in use")."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listeners(port: int) -> set[int]:
    """Pids listening on ``port`` that this user may see (empty when none, or when they are another user's)."""
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return set()
    return {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}


def holder(port: int) -> str:
    """Who listens on ``port``, for an error message."""
    import psutil

    for pid in sorted(listeners(port)):
        try:
            return f"pid {pid}, {' '.join(psutil.Process(pid).cmdline())[:80]}"
        except psutil.Error:
            continue
    return "another process"


def _libpq_url(url: str) -> str:
    """``postgresql+psycopg2://...`` → ``postgresql://...`` for psycopg2."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+")[0]))


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def postgres_answers(url: str) -> bool:
    try:
        psycopg2.connect(_libpq_url(with_database(url, "postgres")), connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def ensure_database(url: str) -> None:
    """Create the metadata database named in ``url`` if it does not exist yet."""
    name = database_name(url)
    admin = psycopg2.connect(_libpq_url(with_database(url, "postgres")), connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise StackError(
            f"no PostgreSQL answers and `{name}` is not installed to start one: install PostgreSQL "
            "(apt-get install postgresql) or pass --db-url of a server you run"
        )
    return found


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: "
            "run sluice as a normal user, create the user, or pass --db-url of a running server"
        ) from None
    return "postgres"


def _wait(check: Callable[[], bool], what: str, proc: Proc) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        if not proc.alive():
            raise StackError(f"{what} exited during start-up; see {proc.log}")
        time.sleep(0.2)
    raise StackError(f"{what} did not answer within {STARTUP_TIMEOUT:.0f} s; see {proc.log}")


def start_postgres(data_dir: Path, port: int, env: dict[str, str]) -> Endpoint:
    user = _run_as()
    initdb, postgres = _postgres_binary("initdb"), _postgres_binary("postgres")
    data_dir.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(data_dir, user, user)
        os.chmod(data_dir, 0o700)
    if not (data_dir / "PG_VERSION").exists():
        made = subprocess.run(
            [initdb, "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"],
            capture_output=True,
            text=True,
            user=user,
            group=user,
            env=env,
        )
        if made.returncode:
            hint = f" (every parent of {data_dir} must be readable by the `{user}` user)" if user else ""
            raise StackError(f"initdb failed{hint}: {made.stderr.strip() or made.stdout.strip()}")
    argv = [postgres, "-D", str(data_dir), "-p", str(port), "-k", str(data_dir), "-c", "listen_addresses=127.0.0.1"]
    log = data_dir.parent / "postgres.log"
    if user:
        log.touch()
        shutil.chown(log, user, user)
    proc = spawn("postgres", "postgres", argv, env, log, user=user, port=port)
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    _wait(lambda: postgres_answers(url), f"PostgreSQL on port {port}", proc)
    return Endpoint(url, proc)


def start_redis(data_dir: Path, port: int, env: dict[str, str]) -> Endpoint:
    binary = shutil.which("redis-server")
    if not binary:
        raise StackError(
            "no Redis answers and `redis-server` is not installed to start one: install Redis "
            "(apt-get install redis-server) or pass --broker-url of a server you run"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    # Append-only file: queued Celery messages survive a Redis restart, as with the chart's Redis.
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--appendonly", "yes"]
    argv += ["--save", "", "--protected-mode", "no"]
    proc = spawn("redis", "redis", argv, env, data_dir.parent / "redis.log", port=port)
    url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: redis_answers(url), f"Redis on port {port}", proc)
    return Endpoint(url, proc)


STOP_SIGNAL = {"postgres": signal.SIGINT, "redis": signal.SIGTERM}  # fast shutdown; Redis flushes its AOF
