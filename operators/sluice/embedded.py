"""The embedded default: Airflow on SQLite with steps as local processes, for laptops and tests.

Sets the environment *before* Airflow is imported (Airflow reads its config at import), so call
``configure()`` first thing.
"""

from __future__ import annotations

import os
from pathlib import Path

from sluice.atomic import write_atomic
from sluice.platform import default_dags_folder, sluice_home

# Tasks run as local processes (no broker, no cluster); `sluice check --target embedded` checks DAGs against it.
EXECUTOR = "LocalExecutor"
LOCAL_SETTINGS = '''"""Written by sluice: enables Sluice's cluster policy (queue routing and checks)."""

from sluice.policy import task_policy  # noqa: F401
'''


def write_local_settings(airflow_home: Path) -> Path:
    config_dir = airflow_home / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    target = config_dir / "airflow_local_settings.py"
    if not target.exists() or target.read_text() != LOCAL_SETTINGS:
        write_atomic(target, LOCAL_SETTINGS)
    return target


def configure(home: Path | None = None, dags_folder: Path | None = None) -> Path:
    """Point Airflow at a SQLite DB under ``$SLUICE_HOME/airflow``; returns AIRFLOW_HOME."""
    home = (home or sluice_home()).resolve()
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        "SLUICE_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or default_dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": EXECUTOR,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "SLUICE_LAUNCHER": os.environ.get("SLUICE_LAUNCHER", "local"),
        "SLUICE_ARTIFACT_ROOT": os.environ.get("SLUICE_ARTIFACT_ROOT", str(home / "artifacts")),
    }
    os.environ.update(env)
    write_local_settings(airflow_home)
    return airflow_home


def migrate() -> None:
    """Create or upgrade the metadata DB; a no-op (fast) when already at head. A DB with no tables yet (a fresh
    home) is created at once: Airflow's check would spend ~2 s on it first (loading every migration script, then a
    one-second wait), a tenth of the demo."""
    import sqlalchemy as sa
    from airflow import settings
    from airflow.utils.db import check_migrations, initdb

    if settings.engine is not None and not sa.inspect(settings.engine).get_table_names():
        initdb()
        return
    try:
        check_migrations(timeout=0)
    except TimeoutError:
        initdb()
