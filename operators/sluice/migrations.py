"""Migrations go forward only: the migration Job refuses an Airflow older than its database's schema.

Airflow's migrations have downgrades, but nothing runs them on a rollback: a rolled-back release (Flux's upgrade
remediation, ``helm rollback``, an older image tag in git) starts the older Airflow's migration Job against the schema
the newer one migrated, and ``airflow db migrate`` then fails deep in alembic with ``Can't locate revision identified
by '...'`` while every pod waits in ``wait-for-migrations``. The chart's migration Job runs
``python -m sluice.migrations forward-only`` first, which says what happened and what to do instead, and touches
nothing.

It checks every alembic history ``airflow db migrate`` migrates: Airflow's own (``alembic_version``) and each
external DB manager's (the FAB provider's ``alembic_version_fab``). A database revision the installed code does not
know is a schema from a newer release: this Airflow's migrations hold every revision from Airflow 2.6.2 up to its head
(an unknown revision in a database without Airflow 3's ``dag_version`` table is older than that instead, and is
named so).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sluice.errors import SluiceError

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

# Exit codes of `python -m sluice.migrations forward-only`: the schema is ahead (refused) vs. anything else failed.
EXIT_REFUSED = 3
EXIT_FAILED = 1


class SchemaAheadError(SluiceError, RuntimeError):
    """The database schema is one this Airflow (or one of its providers) must not migrate: newer than its migrations
    (a rolled-back release), or, rarely, older than the oldest of them; the message says which and what to do."""


@dataclass(frozen=True)
class Lineage:
    """One alembic history that ``airflow db migrate`` migrates."""

    owner: str  # "Airflow", "fab provider"
    release: str  # "Airflow 3.3.2", "apache-airflow-providers-fab 3.10.2"
    version_table: str
    script: ScriptDirectory


def _script(alembic_ini: str, script_location: str) -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(alembic_ini)
    config.set_main_option("script_location", script_location.replace("%", "%%"))
    return ScriptDirectory.from_config(config)


def lineages() -> list[Lineage]:
    """Airflow's own history, then each external DB manager's, as ``airflow db migrate`` finds them."""
    import airflow
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    package = os.path.dirname(airflow.__file__)
    ini = conf.get("database", "alembic_ini_file_path")
    found = [
        Lineage(
            owner="Airflow",
            release=f"Airflow {airflow.__version__}",
            version_table="alembic_version",
            script=_script(
                ini if os.path.isabs(ini) else os.path.join(package, ini), os.path.join(package, "migrations")
            ),
        )
    ]
    providers = ProvidersManager()
    names = list(providers.db_managers)
    for extra in conf.get("database", "external_db_managers", fallback="").split(","):
        if extra.strip() and extra.strip() not in names:
            names.append(extra.strip())
    for name in names:
        module, _, attribute = name.rpartition(".")
        manager = getattr(importlib.import_module(module), attribute)
        # airflow.providers.<name>.…: the provider that ships the manager and its migrations.
        provider = module.split(".")[2] if module.startswith("airflow.providers.") else module
        distribution = f"apache-airflow-providers-{provider.replace('_', '-')}"
        info = providers.providers.get(distribution)
        found.append(
            Lineage(
                owner=f"{provider} provider",
                release=f"{distribution} {info.version}" if info else name,
                version_table=manager.version_table_name,
                script=_script(manager.alembic_file, manager.migration_dir),
            )
        )
    return found


def _known(script: ScriptDirectory, revision: str) -> bool:
    from alembic.util.exc import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError: no such revision in these migrations
        return False


def check_forward_only(connection: sa.Connection, found: list[Lineage]) -> list[str]:
    """One line per lineage saying where the database is; raises SchemaAheadError when it is ahead of the code."""
    import sqlalchemy as sa
    from alembic.migration import MigrationContext

    report = []
    for lineage in found:
        heads = lineage.script.get_heads()
        head = ", ".join(heads)
        context = MigrationContext.configure(connection, opts={"version_table": lineage.version_table})
        current = context.get_current_heads()
        if not current:
            report.append(f"{lineage.version_table}: not migrated yet (head {head})")
            continue
        for revision in current:
            if _known(lineage.script, revision):
                continue
            if lineage.owner == "Airflow" and not sa.inspect(connection).has_table("dag_version"):
                raise SchemaAheadError(
                    f"the database schema is at revision {revision}, which {lineage.release} cannot migrate from: "
                    f"it is older than Airflow 2.6.2 (no dag_version table); migrate it with Airflow 2.x first"
                )
            raise SchemaAheadError(
                f"the database schema is at revision {revision}, newer than this {lineage.owner}'s head {head} "
                f"({lineage.release}, table {lineage.version_table}): migrations go forward only; roll forward, "
                "don't roll back: deploy the release that migrated this database, or a newer one"
            )
        report.append(f"{lineage.version_table}: at {', '.join(current)} (head {head})")
    return report


def main(argv: list[str]) -> int:
    """``python -m sluice.migrations forward-only``: exit 0 when ``airflow db migrate`` may run, 3 when the schema is
    ahead of this Airflow (refused, with the reason), 1 when the check itself failed."""
    if argv != ["forward-only"]:
        print(
            "usage: python -m sluice.migrations forward-only   (reads AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)",
            file=sys.stderr,
        )
        return 2
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if not url:
        print("schema: failed: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set", file=sys.stderr)
        return EXIT_FAILED
    import logging

    import sqlalchemy as sa

    logging.getLogger("alembic").setLevel(logging.WARNING)  # alembic's "Context impl ..." lines say nothing here
    engine = sa.create_engine(url)
    try:
        found = lineages()
        with engine.connect() as connection:
            report = check_forward_only(connection, found)
    except SchemaAheadError as refused:
        print(f"schema: refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    except sa.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"schema: failed: {reason}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        engine.dispose()
    print(f"schema: forward only: {'; '.join(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
