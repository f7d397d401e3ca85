"""The embedded default's metadata DB (sluice.embedded.migrate): created at once in a fresh home, checked after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MIGRATE = """
import sys
import airflow.utils.db as db
if sys.argv[1] == "fresh":
    def refuse(timeout):
        raise AssertionError("Airflow's check ran on a DB with no tables")
    db.check_migrations = refuse
from sluice import embedded
embedded.migrate()
import sqlalchemy as sa
from airflow import settings
print("alembic_version" in sa.inspect(settings.engine).get_table_names())
"""


def _migrate(home: Path, how: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
    }
    out = subprocess.run([sys.executable, "-c", MIGRATE, how], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # two interpreters that import Airflow
def test_a_fresh_homes_db_is_created_without_airflows_check_then_found_at_head(tmp_path: Path) -> None:
    """Airflow's check loads every migration script and waits a second on a DB with no tables (~1.2 s of a fresh
    demo); a fresh home's DB is created straight away, and the next start checks it as before."""
    assert _migrate(tmp_path, "fresh") == "True"
    assert _migrate(tmp_path, "again") == "True"
