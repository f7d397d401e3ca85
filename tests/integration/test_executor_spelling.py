"""A DAG that names the KubernetesExecutor by module path is not Celery load, end to end on the real schema.

Real Airflow parses the DAG with Sluice's cluster policy (``airflow dags reserialize``), a real trigger
creates the run's task instances from the serialized DAG, and the per-pool KEDA query counts them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sluice.embedded import write_local_settings
from sluice.platform import Pool
from sluice.policy import KUBERNETES_EXECUTOR_PATH
from sluice.scaling import pool_load_sql

pytestmark = pytest.mark.integration
DAG_ID = "executor_spelling"
DAG_FILE = f'''
from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("{DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1)):
    EmptyOperator(task_id="by_path", executor="{KUBERNETES_EXECUTOR_PATH}")
    EmptyOperator(task_id="by_path_on_kubernetes_queue", queue="kubernetes", executor="{KUBERNETES_EXECUTOR_PATH}")
    EmptyOperator(task_id="by_alias", executor="KubernetesExecutor")
    EmptyOperator(task_id="on_celery")
'''
# The default pool at concurrency 1: its load is the number of rows it counts.
DEFAULT_POOL = Pool(name="default", queues=["default"], concurrency=1)


def airflow(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def stored(airflow_postgres: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Parse, serialize and trigger the DAG as the dag-processor and the API would; task_id -> executor row."""
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "executor_spelling.py").write_text(textwrap.dedent(DAG_FILE))
    write_local_settings(home)  # the policy, as the chart and `sluice up` install it
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_postgres,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor,KubernetesExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow(env, "dags", "reserialize")
    engine = sa.create_engine(airflow_postgres)
    with engine.connect() as conn:
        parsed = conn.execute(sa.text("SELECT count(*) FROM dag WHERE dag_id = :d"), {"d": DAG_ID}).scalar_one()
    assert parsed, airflow(env, "dags", "list-import-errors")
    trigger = (
        "from airflow.api.common.trigger_dag import trigger_dag; from airflow.utils.types import "
        f"DagRunTriggeredByType; trigger_dag({DAG_ID!r}, run_id='r1', triggered_by=DagRunTriggeredByType.TEST)"
    )
    proc = subprocess.run([sys.executable, "-c", trigger], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE task_instance SET state = 'queued' WHERE dag_id = :d"), {"d": DAG_ID})
        rows = conn.execute(sa.text("SELECT task_id, executor FROM task_instance WHERE dag_id = :d"), {"d": DAG_ID})
        executors = {task_id: executor for task_id, executor in rows}
    engine.dispose()
    return executors


def test_a_task_naming_the_kubernetes_executor_by_path_is_stored_with_the_alias(stored: dict[str, str | None]) -> None:
    assert stored == {
        "by_path": "KubernetesExecutor",
        "by_path_on_kubernetes_queue": "KubernetesExecutor",
        "by_alias": "KubernetesExecutor",
        "on_celery": None,
    }


def test_only_the_celery_task_counts_as_the_default_pools_load(
    stored: dict[str, str | None], airflow_postgres: str
) -> None:
    """Three KubernetesExecutor tasks on queue 'default' (two written by module path), one Celery task."""
    engine = sa.create_engine(airflow_postgres)
    with engine.connect() as conn:
        assert float(conn.execute(sa.text(pool_load_sql(DEFAULT_POOL))).scalar_one()) == 1
    engine.dispose()
