"""A PostgreSQL server for tests: the one on 127.0.0.1:5432 if it answers, else a throwaway one.

Every test database gets a unique name and is dropped afterwards, so runs never collide.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

DEFAULT = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _answers(host: str, port: int, user: str) -> bool:
    try:
        psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def _pg_ctl() -> str:
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[::-1]), None)
    if not found:
        raise RuntimeError(
            "no PostgreSQL answers on 127.0.0.1:5432 and no pg_ctl is installed to start one: "
            "install the Debian package `postgresql` (apt-get install postgresql) or start a server"
        )
    return found


def _start_system_cluster() -> bool:
    """A stopped Debian cluster (a fresh machine before its services start) is started, not replaced."""
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return False
    for version in sorted(os.listdir("/etc/postgresql")):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], capture_output=True, timeout=60
        )
    return True


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, object]]:
    """Connection parameters of a usable server (host, port, user) for the duration of the block."""
    host, port, user = (
        os.environ.get("SLUICE_TEST_PGHOST", "127.0.0.1"),
        int(os.environ.get("SLUICE_TEST_PGPORT", "5432")),
        os.environ.get("SLUICE_TEST_PGUSER", "postgres"),
    )
    if _answers(host, port, user) or (_start_system_cluster() and _answers(host, port, user)):
        yield {"host": host, "port": port, "user": user}
        return
    if os.geteuid() == 0:
        raise RuntimeError(
            f"no PostgreSQL answers on {host}:{port}, and pg_ctl refuses to start a throwaway server as root: "
            "start the system cluster (pg_ctlcluster <version> main start) or run the tests as a normal user"
        )
    from port_for import get_port
    from pytest_postgresql.executor import PostgreSQLExecutor

    pg_ctl = _pg_ctl()
    datadir = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    executor = PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=get_port(None),
        datadir=str(datadir / "data"),
        unixsocketdir=str(datadir),
        logfile=str(datadir / "log"),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        password="",
        options="",
        postgres_options="",
    )
    with executor:
        executor.wait_for_postgres()
        yield {"host": executor.host, "port": executor.port, "user": executor.user}
    shutil.rmtree(datadir, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: dict[str, object], prefix: str = "sluice_test") -> Iterator[str]:
    """A new, uniquely named database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **server)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{server['user']}@{server['host']}:{server['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def drop_database(url: str) -> None:
    """Remove the database a SQLAlchemy URL names (a stack's metadata DB: the benches clean up after themselves)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(scheme=parts.scheme.split("+")[0], path="/postgres"))
    admin = psycopg2.connect(admin_url, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
