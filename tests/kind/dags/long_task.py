"""One long task, running while the chart is upgraded: it must finish on its first try (kind suite)."""

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    "long_task",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "ml-platform", "retries": 0},
):
    BashOperator(task_id="outlives_the_upgrade", bash_command="sleep 120", queue="default")
