"""24 sleeping tasks on the default queue: enough queued work for KEDA to scale the default pool up
(values-dev: concurrency 4, 1..3 workers), then back down when they are done (kind suite)."""

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    "default_pool_load",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=32,
    default_args={"owner": "ml-platform", "retries": 0},
):
    BashOperator.partial(task_id="hold_a_slot", queue="default").expand(bash_command=["sleep 90"] * 24)
