"""``ensure-index`` repairs the pool-load index, on a real PostgreSQL with the real Airflow 3.3 schema.

A broken index is silent: the poll stays correct and only falls back to a slower plan. The two ways it
breaks in practice are reproduced here as they happen: an interrupted ``CREATE INDEX CONCURRENTLY`` (an
INVALID index that ``IF NOT EXISTS`` keeps) and an index of the same name left by an older release.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg2
import pytest
import sqlalchemy as sa
from sluice.platform import Pool
from sluice.scaling import INDEX_NAME, ensure_index, index_sql, pool_load_sql

from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration
OLDER_DEFINITION = f"CREATE INDEX {INDEX_NAME} ON task_instance (queue, executor) WHERE state IN ('queued', 'running')"
DEFAULT_POOL = Pool(name="default", queues=["default"], concurrency=8)


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


@pytest.fixture(scope="module")
def engine(airflow_postgres: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(airflow_postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, state) "
                "VALUES ('d', 'r', 'manual', :now, 'running')"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, pool, "
                "pool_slots, queue, state) SELECT gen_random_uuid(), 't' || g, 'd', 'r', -1, 1, 0, 'default_pool', 1, "
                "'default', (ARRAY['queued', 'running', 'success'])[1 + g % 3] FROM generate_series(1, 300) g"
            )
        )
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def no_index(engine: sa.Engine) -> None:
    """Each test starts without the index or any leftover of an earlier build."""
    with engine.connect() as conn:
        names = conn.execute(
            sa.text("SELECT relname FROM pg_class WHERE relkind = 'i' AND relname LIKE :pattern"),
            {"pattern": f"{INDEX_NAME}%"},
        ).scalars()
        for name in list(names):
            conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))


def indexes(engine: sa.Engine) -> dict[str, tuple[bool, str]]:
    """Every index named like the pool-load index: name -> (valid, definition)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, i.indisvalid, pg_get_indexdef(c.oid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE :pattern"
            ),
            {"pattern": f"{INDEX_NAME}%"},
        )
        return {name: (valid, definition) for name, valid, definition in rows}


def index_oid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT to_regclass(:n)::oid"), {"n": INDEX_NAME}).scalar_one()


def interrupted(airflow_postgres: str, statement: str) -> None:
    """Run ``statement`` while another transaction holds a write lock on task_instance, as a running
    scheduler's transaction does, and cancel it with a statement timeout while it waits for that lock."""
    blocker = psycopg2.connect(dsn(airflow_postgres))
    victim = psycopg2.connect(dsn(airflow_postgres))
    victim.autocommit = True
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE task_instance IN ROW EXCLUSIVE MODE")
        with victim.cursor() as cur:
            cur.execute("SET statement_timeout = '300ms'")
            with pytest.raises(psycopg2.errors.QueryCanceled):
                cur.execute(statement)
    finally:
        blocker.rollback()
        blocker.close()
        victim.close()


def uses_the_index(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE task_instance"))
        conn.execute(sa.text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + pool_load_sql(DEFAULT_POOL))))
        conn.execute(sa.text("RESET enable_seqscan"))
    return INDEX_NAME in plan


def test_a_missing_index_is_created(engine: sa.Engine, airflow_postgres: str) -> None:
    assert ensure_index(airflow_postgres) == "created"
    assert indexes(engine)[INDEX_NAME][0] is True


def test_a_valid_current_index_is_left_alone(engine: sa.Engine, airflow_postgres: str) -> None:
    """The migration Job runs on every upgrade: a healthy index is never rebuilt."""
    ensure_index(airflow_postgres)
    before = index_oid(engine)
    assert ensure_index(airflow_postgres) == "present"
    assert index_oid(engine) == before


def test_an_interrupted_concurrent_build_leaves_an_invalid_index_that_is_rebuilt(
    engine: sa.Engine, airflow_postgres: str
) -> None:
    interrupted(airflow_postgres, index_sql())
    assert indexes(engine)[INDEX_NAME][0] is False  # the reproduction: INVALID, and IF NOT EXISTS keeps it
    assert not uses_the_index(engine)

    assert ensure_index(airflow_postgres) == "rebuilt: invalid"
    assert indexes(engine)[INDEX_NAME][0] is True
    assert uses_the_index(engine)


def test_an_index_of_the_same_name_with_an_older_definition_is_rebuilt(
    engine: sa.Engine, airflow_postgres: str
) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text(OLDER_DEFINITION))  # no deduplicate_items = off: bloats under churn

    outcome = ensure_index(airflow_postgres)

    assert outcome.startswith("rebuilt: definition changed (was: CREATE INDEX sluice_ti_pool_load ON"), outcome
    valid, definition = indexes(engine)[INDEX_NAME]
    assert valid and "deduplicate_items=off" in definition


def test_an_index_of_the_same_name_on_other_columns_is_rebuilt(engine: sa.Engine, airflow_postgres: str) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE INDEX {INDEX_NAME} ON task_instance (queue) WHERE state = 'queued'"))
    assert ensure_index(airflow_postgres).startswith("rebuilt: definition changed")
    assert "(queue, executor)" in indexes(engine)[INDEX_NAME][1]


def test_a_leftover_of_an_interrupted_reindex_is_dropped(engine: sa.Engine, airflow_postgres: str) -> None:
    """docs/operations.md suggests REINDEX CONCURRENTLY against bloat; interrupted, it leaves an INVALID
    ``_ccnew`` copy that every write to task_instance keeps maintaining."""
    ensure_index(airflow_postgres)
    interrupted(airflow_postgres, f"REINDEX INDEX CONCURRENTLY {INDEX_NAME}")
    assert indexes(engine)[f"{INDEX_NAME}_ccnew"][0] is False  # the reproduction

    outcome = ensure_index(airflow_postgres)

    assert outcome == f"present; dropped leftover invalid index {INDEX_NAME}_ccnew"
    assert list(indexes(engine)) == [INDEX_NAME]


def test_a_rebuild_never_blocks_the_schedulers_writes(engine: sa.Engine, airflow_postgres: str) -> None:
    """Drop and build are CONCURRENTLY: while the rebuild waits for an open transaction, other writes to
    task_instance still go through (a plain CREATE/DROP INDEX would queue them behind its lock)."""
    with engine.connect() as conn:
        conn.execute(sa.text(OLDER_DEFINITION))
    open_transaction = psycopg2.connect(dsn(airflow_postgres))
    with open_transaction.cursor() as cur:
        cur.execute("UPDATE task_instance SET last_heartbeat_at = now() WHERE task_id = 't1'")
    outcome: list[str] = []
    rebuild = threading.Thread(target=lambda: outcome.append(ensure_index(airflow_postgres)))
    rebuild.start()
    try:
        with engine.connect() as conn:
            for _ in range(600):  # the rebuild reaches its wait for the open transaction
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query LIKE '%INDEX CONCURRENTLY%'"
                    )
                ).scalar_one()
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, "the rebuild never waited for the open transaction"
            conn.execute(sa.text("SET lock_timeout = '5s'"))
            conn.execute(sa.text("UPDATE task_instance SET last_heartbeat_at = now() WHERE task_id = 't2'"))
            conn.execute(
                sa.text(
                    "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, "
                    "pool, pool_slots, queue, state) VALUES (gen_random_uuid(), 'new', 'd', 'r', -1, 1, 0, "
                    "'default_pool', 1, 'default', 'queued')"
                )
            )
            conn.execute(sa.text("DELETE FROM task_instance WHERE task_id = 'new'"))
    finally:
        open_transaction.rollback()
        open_transaction.close()
        rebuild.join(timeout=120)
    assert outcome and outcome[0].startswith("rebuilt: definition changed")


def cli(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
    return subprocess.run(
        [sys.executable, "-m", "sluice.scaling", "ensure-index"], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_command_says_what_it_did_and_exits_zero(engine: sa.Engine, airflow_postgres: str) -> None:
    """The migration Job's log is where an operator sees it: created, present or rebuilt and why."""
    interrupted(airflow_postgres, index_sql())
    first, second = cli(airflow_postgres), cli(airflow_postgres)
    assert (first.returncode, first.stdout) == (0, f"index {INDEX_NAME}: rebuilt: invalid\n"), first.stderr
    assert (second.returncode, second.stdout) == (0, f"index {INDEX_NAME}: present\n"), second.stderr


def test_the_command_fails_with_a_reason_on_an_unmigrated_database(pg_server: dict[str, object]) -> None:
    """A real failure fails the Job (non-zero) with one line saying why, not a traceback."""
    with fresh_database(pg_server, "sluice_nomigrate") as url:
        proc = cli(url)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"index {INDEX_NAME}: failed: table task_instance not found (run `airflow db migrate` first)"
    ]
