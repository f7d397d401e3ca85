"""Migrations go forward only: the migration Job's guard refuses an Airflow older than the schema, with the reason.

A real PostgreSQL database migrated by the real ``airflow db migrate``; each test works on a copy of it (``CREATE
DATABASE ... TEMPLATE``) stamped the way a newer release, or a rollback, leaves it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa
from sluice.migrations import EXIT_REFUSED, Lineage, SchemaAheadError, check_forward_only, lineages

pytestmark = pytest.mark.integration
NEWER = "f00dfeedbeef"  # a revision no installed migration knows: what a newer Airflow leaves behind


@pytest.fixture(scope="module")
def found() -> list[Lineage]:
    return lineages()


@pytest.fixture(scope="module")
def airflow_head(found: list[Lineage]) -> str:
    return found[0].script.get_current_head() or ""


@pytest.fixture
def copy_of(airflow_postgres: str, pg_server: dict[str, object]) -> Iterator[str]:
    """A copy of the migrated database, dropped afterwards."""
    template = airflow_postgres.rsplit("/", 1)[1]
    name = f"sluice_fwd_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **pg_server)  # type: ignore[arg-type]
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield airflow_postgres.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def check(url: str, found: list[Lineage]) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return check_forward_only(conn, found)
    finally:
        engine.dispose()


def run(url: str, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_a_database_at_this_airflows_head_passes(copy_of: str, found: list[Lineage], airflow_head: str) -> None:
    report = check(copy_of, found)
    assert report[0] == f"alembic_version: at {airflow_head} (head {airflow_head})"
    assert any(line.startswith("alembic_version_fab: at ") for line in report), "the FAB provider's history too"


def test_an_empty_database_passes_for_its_first_migration(pg_server: dict[str, object], found: list[Lineage]) -> None:
    from tests.support.postgres import fresh_database

    with fresh_database(pg_server, "sluice_fwd_empty") as url:
        assert check(url, found)[0].startswith("alembic_version: not migrated yet")


def test_an_older_revision_passes_for_airflow_db_migrate_to_go_forward(copy_of: str, found: list[Lineage]) -> None:
    """An upgrade: the database is behind the code (here the 3.2.0 head), which is what migrations are for."""
    execute(copy_of, "UPDATE alembic_version SET version_num = '1d6611b6ab7c'")
    assert check(copy_of, found)[0].startswith("alembic_version: at 1d6611b6ab7c (head ")


def test_a_schema_from_a_newer_airflow_is_refused_with_the_revisions_and_the_way_out(
    copy_of: str, found: list[Lineage], airflow_head: str
) -> None:
    execute(copy_of, f"UPDATE alembic_version SET version_num = '{NEWER}'")
    with pytest.raises(SchemaAheadError) as refused:
        check(copy_of, found)
    assert str(refused.value).startswith(
        f"the database schema is at revision {NEWER}, newer than this Airflow's head {airflow_head} (Airflow 3."
    )
    assert "migrations go forward only; roll forward, don't roll back" in str(refused.value)


def test_a_schema_from_a_newer_fab_provider_is_refused_naming_it(copy_of: str, found: list[Lineage]) -> None:
    execute(copy_of, f"UPDATE alembic_version_fab SET version_num = '{NEWER}'")
    with pytest.raises(SchemaAheadError, match=rf"revision {NEWER}, newer than this fab provider's head \w+ "):
        check(copy_of, found)


def test_an_unknown_revision_without_airflow_3s_tables_is_called_too_old_not_newer(
    copy_of: str, found: list[Lineage]
) -> None:
    """An Airflow 2.5 database: its revision is as unknown as a newer one's, but it lacks dag_version."""
    execute(copy_of, "UPDATE alembic_version SET version_num = '290244fb8b83'", "DROP TABLE dag_version CASCADE")
    with pytest.raises(SchemaAheadError, match=r"older than Airflow 2\.6\.2 .* migrate it with Airflow 2\.x first"):
        check(copy_of, found)


def test_the_jobs_command_exits_3_with_one_line_before_airflow_db_migrate_would_fail_obscurely(
    copy_of: str, airflow_head: str, tmp_path: Path
) -> None:
    """What the migration Job's log shows after a rollback, against what `airflow db migrate` alone shows."""
    execute(copy_of, f"UPDATE alembic_version SET version_num = '{NEWER}'")
    guard = run(copy_of, tmp_path, sys.executable, "-m", "sluice.migrations", "forward-only")
    assert guard.returncode == EXIT_REFUSED, guard.stdout + guard.stderr
    assert (
        f"schema: refused: the database schema is at revision {NEWER}, newer than this Airflow's head {airflow_head}"
    ) in guard.stderr
    assert "Traceback" not in guard.stderr
    migrate = run(copy_of, tmp_path, str(Path(sys.executable).parent / "airflow"), "db", "migrate")
    assert migrate.returncode != 0 and f"Can't locate revision identified by '{NEWER}'" in migrate.stderr
    engine = sa.create_engine(copy_of)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == NEWER, "nothing touched"
    engine.dispose()


def test_the_jobs_command_passes_a_database_at_head(copy_of: str, tmp_path: Path) -> None:
    guard = run(copy_of, tmp_path, sys.executable, "-m", "sluice.migrations", "forward-only")
    assert guard.returncode == 0, guard.stderr
    assert guard.stdout.startswith("schema: forward only: alembic_version: at ")
