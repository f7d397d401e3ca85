"""Connections to the stack's metadata database that give up quickly, and connection URLs fit for messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

DB_CONNECT_TIMEOUT = 5  # seconds `sluice status` and the autoscaler wait to connect to the metadata database


def engine(url: str) -> Engine:
    """A SQLAlchemy engine with no pool (each use is brief) and a short connect timeout for PostgreSQL."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": DB_CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)


def redacted(url: str) -> str:
    """A connection URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
