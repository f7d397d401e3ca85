"""How many workers a pool wants: the one query and formula shared by the chart's KEDA ScaledObjects
(``charts/sluice/files/pool-load.sql``, a byte-identical copy checked by a test) and local autoscaling.

Load counts queued + running task instances on the pool's queues that are not KubernetesExecutor
tasks. ``IS DISTINCT FROM``, never ``!=``: most Celery tasks have a NULL executor, which ``!=`` drops.
Airflow stores a task's executor as the DAG wrote it; ``sluice.policy.task_policy`` stores every spelling
of the KubernetesExecutor (module path, custom alias) as ``'KubernetesExecutor'``, the one this query knows.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from sluice import compat
from sluice.errors import SluiceError
from sluice.platform import Pool

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

INDEX_NAME = "sluice_ti_pool_load"
# The shape of sql/pool-load-index.sql: ensure_index rebuilds the same statement on a scratch table.
_INDEX_STATEMENT = re.compile(
    r"CREATE INDEX CONCURRENTLY IF NOT EXISTS (?P<name>\w+) ON (?P<table>\w+) (?P<body>.+)", re.S
)
# pg_get_indexdef's head, ``CREATE [UNIQUE] INDEX name ON [ONLY] schema.table ``: names, not shape.
_DEFINITION_HEAD = re.compile(r"CREATE (?P<unique>UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ ")
# Session advisory lock key (any constant): two ensure-index runs take turns instead of dropping each other's build.
_ADVISORY_LOCK = 7_305_106_119_624_111


def _sql(name: str) -> str:
    return resources.files("sluice").joinpath("sql", name).read_text().strip()


def pool_load_sql(pool: Pool) -> str:
    """The SQL KEDA runs for this pool: ceil(load / concurrency), i.e. the replicas the load needs."""
    for queue in pool.queues:
        if "'" in queue:
            raise ValueError(f"pool {pool.name!r}: queue name {queue!r} must not contain a quote")
    queues = ", ".join(f"'{q}'" for q in pool.queues)
    return _sql("pool-load.sql").replace("{queues}", queues).replace("{concurrency}", str(pool.concurrency))


def pool_state_counts_sql(pool: Pool) -> str:
    """Queued and running task instances of the pool, by state: the same filter as the load query."""
    load = pool_load_sql(pool)
    where = load[load.index(" FROM task_instance") :]
    return f"SELECT state, COUNT(*){where} GROUP BY state"


def index_sql() -> str:
    """Partial covering index that makes every poll an index-only scan.

    Fresh (just vacuumed) a poll costs ~0.25–0.45 ms. Between VACUUMs every state move and heartbeat adds
    an entry: through a simulated busy day the index grows 200 kB -> ~21 MB and the busy pool's poll costs
    ~3 ms (p50), still well below the official chart's query on the same data. Figures in
    docs/performance.md; what keeps it small in docs/operations.md.
    """
    return _sql("pool-load-index.sql")


def desired_replicas(needed: float | int | None, pool: Pool) -> int:
    """KEDA's answer for a pool: the query's value clamped to [min, max]; 0 only when scale-to-zero."""
    scaling = pool.autoscaling
    wanted = math.ceil(needed or 0)
    return max(scaling.min_replicas, min(scaling.max_replicas, wanted))


class IndexBuildError(SluiceError, RuntimeError):
    """ensure-index could not leave a valid, current index: the migration Job fails with this message."""


@dataclass(frozen=True)
class _Found:
    schema: str
    valid: bool
    shape: str
    definition: str


def _shape(definition: str) -> str:
    """An index definition without its names (``UNIQUE`` kept): what the index is, not what it is called."""
    head = _DEFINITION_HEAD.match(definition)
    if head is None:
        raise IndexBuildError(f"unexpected index definition: {definition}")
    return (head["unique"] or "") + definition[head.end() :]


def _statement() -> re.Match[str]:
    statement = _INDEX_STATEMENT.fullmatch(index_sql())
    if statement is None or statement["name"] != INDEX_NAME:
        raise IndexBuildError(
            f"sql/pool-load-index.sql must read `CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON <table> ...`"
        )
    return statement


def _expected_shape(conn: Connection, statement: re.Match[str]) -> str:
    """What the SQL file builds, as this server prints it: the same statement on an empty scratch copy of
    the table (column types, casts and options come out exactly as for the real one), rolled back."""
    import sqlalchemy as sa

    conn.execute(sa.text("BEGIN"))
    try:
        conn.execute(sa.text(f"CREATE TEMP TABLE sluice_index_probe (LIKE {statement['table']})"))
        conn.execute(sa.text(f"CREATE INDEX {INDEX_NAME} ON pg_temp.sluice_index_probe {statement['body']}"))
        definition = conn.execute(
            sa.text("SELECT pg_get_indexdef(to_regclass(:name))"), {"name": f"pg_temp.{INDEX_NAME}"}
        ).scalar_one()
    finally:
        conn.execute(sa.text("ROLLBACK"))
    return _shape(definition)


def _indexes(conn: Connection, table: str, pattern: str) -> dict[str, _Found]:
    """Indexes named like ``pattern`` in the table's schema; ``shape`` is empty for one on another table."""
    import sqlalchemy as sa

    rows = conn.execute(
        sa.text(
            "SELECT c.relname, n.nspname, i.indisvalid, i.indrelid = t.oid, pg_get_indexdef(c.oid) "
            "FROM pg_class t JOIN pg_class c ON c.relnamespace = t.relnamespace "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE t.oid = to_regclass(:table) AND c.relname LIKE :pattern"
        ),
        {"table": table, "pattern": pattern},
    )
    return {
        name: _Found(schema, valid, _shape(definition) if on_table else "", definition)
        for name, schema, valid, on_table, definition in rows
    }


def _quoted(conn: Connection, schema: str, name: str) -> str:
    preparer = conn.dialect.identifier_preparer
    return f"{preparer.quote_identifier(schema)}.{preparer.quote_identifier(name)}"


def _drop_leftovers(conn: Connection, table: str) -> list[str]:
    """INVALID ``_ccnew``/``_ccold`` copies an interrupted ``REINDEX INDEX CONCURRENTLY`` leaves behind
    (they serve no query but every write maintains them). Left alone while another session builds an
    index on the table: that may be the REINDEX, still running."""
    import sqlalchemy as sa

    building = conn.execute(
        sa.text(
            "SELECT count(*) FROM pg_stat_progress_create_index "
            "WHERE relid = to_regclass(:table) AND pid <> pg_backend_pid()"
        ),
        {"table": table},
    ).scalar_one()
    if building:
        return []
    dropped = []
    for suffix in ("ccnew", "ccold"):
        for name, found in sorted(_indexes(conn, table, f"{INDEX_NAME}\\_{suffix}%").items()):
            if not found.valid and re.fullmatch(rf"{INDEX_NAME}_{suffix}\d*", name):
                conn.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {_quoted(conn, found.schema, name)}"))
                dropped.append(name)
    return dropped


def _ensure(conn: Connection) -> str:
    import sqlalchemy as sa

    statement = _statement()
    table = statement["table"]
    if conn.execute(sa.text("SELECT to_regclass(:table)"), {"table": table}).scalar_one() is None:
        raise IndexBuildError(f"table {table} not found (run `airflow db migrate` first)")
    expected = _expected_shape(conn, statement)
    dropped = _drop_leftovers(conn, table)
    found = _indexes(conn, table, INDEX_NAME).get(INDEX_NAME)
    if found is None:
        conn.execute(sa.text(index_sql()))
        outcome = "created"
    elif found.shape == expected and found.valid:
        outcome = "present"
    else:
        # Both cases drop, then build: an INVALID index serves no query, so nothing is lost meanwhile, and
        # an interrupted rebuild leaves the same state for the next run (REINDEX CONCURRENTLY would leave
        # a _ccnew copy instead). Between the two statements polls are correct, only slower.
        outcome = (
            "rebuilt: invalid" if found.shape == expected else f"rebuilt: definition changed (was: {found.definition})"
        )
        conn.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {_quoted(conn, found.schema, INDEX_NAME)}"))
        conn.execute(sa.text(index_sql()))
    after = _indexes(conn, table, INDEX_NAME).get(INDEX_NAME)
    if after is None or not after.valid or after.shape != expected:
        raise IndexBuildError(f"still not a valid, current index after `{outcome}`: {after}")
    if dropped:
        outcome += f"; dropped leftover invalid index {', '.join(dropped)}"
    return outcome


def ensure_index(connection_url: str) -> str:
    """Make the pool-load index exist, valid, with the SQL file's definition; returns what it did.

    ``created``, ``present``, ``rebuilt: invalid`` (an interrupted ``CREATE INDEX CONCURRENTLY`` left it
    INVALID, and ``IF NOT EXISTS`` would keep it for ever) or ``rebuilt: definition changed (was: ...)``
    (an index of that name from an older release). Every DDL statement is CONCURRENTLY: it waits for open
    transactions but never blocks a running scheduler's reads or writes.
    """
    import sqlalchemy as sa

    engine = sa.create_engine(connection_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                return f"skipped: {conn.dialect.name} database (the index is for PostgreSQL)"
            found = compat.pool_load_problem(conn)  # KEDA's query reads the same columns: say so before it polls
            if found is not None:
                raise IndexBuildError(f"the pool-load query and its index are not known to work here: {found}")
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK})
            try:
                return _ensure(conn)
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK})
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    """``python -m sluice.scaling ensure-index``: one line saying what was done; non-zero only on failure."""
    if argv != ["ensure-index"]:
        print(
            "usage: python -m sluice.scaling ensure-index   (reads AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)",
            file=sys.stderr,
        )
        return 2
    import sqlalchemy as sa

    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not url:
        print(f"index {INDEX_NAME}: failed: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set", file=sys.stderr)
        return 1
    try:
        outcome = ensure_index(url)
    except (IndexBuildError, sa.exc.SQLAlchemyError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"index {INDEX_NAME}: failed: {reason}", file=sys.stderr)
        return 1
    print(f"index {INDEX_NAME}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
