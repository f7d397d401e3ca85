"""Throwaway PostgreSQL and Redis for the local stack: started from the binaries here, or a clear error."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis
from sluice.stack import services
from sluice.stack.errors import StackError
from sluice.stack.processes import stop

pytestmark = pytest.mark.integration


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the ``postgres`` user can reach (pytest's tmp_path is private to root when run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_throwaway_postgres_starts_answers_and_stops_cleanly(open_dir: Path) -> None:
    endpoint = services.start_postgres(open_dir / "data", services.free_port(), dict(os.environ))
    assert endpoint.proc is not None
    try:
        url = services.with_database(endpoint.url, "sluice")
        services.ensure_database(url)
        services.ensure_database(url)  # idempotent
        conn = psycopg2.connect(services._libpq_url(url))
        assert conn.server_version >= 130000
        conn.close()
    finally:
        assert stop(endpoint.proc, services.STOP_SIGNAL["postgres"], timeout=30) == "stopped"
    assert not services.postgres_answers(endpoint.url)


def test_throwaway_redis_keeps_its_queue_across_a_restart(tmp_path: Path) -> None:
    port = services.free_port()
    endpoint = services.start_redis(tmp_path / "redis", port, dict(os.environ))
    redis.Redis.from_url(endpoint.url).rpush("default", "message")
    stop(endpoint.proc, signal.SIGTERM, timeout=30)
    again = services.start_redis(tmp_path / "redis", port, dict(os.environ))
    try:
        assert redis.Redis.from_url(again.url).lrange("default", 0, -1) == [b"message"]
    finally:
        stop(again.proc, signal.SIGTERM, timeout=30)


def test_missing_redis_binary_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match=r"apt-get install redis-server.*--broker-url"):
        services.start_redis(tmp_path / "redis", services.free_port(), {})


def test_missing_postgres_binaries_name_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(services.glob, "glob", lambda pattern: [])
    with pytest.raises(StackError, match=r"apt-get install postgresql.*--db-url"):
        services.start_postgres(tmp_path / "data", services.free_port(), {})
