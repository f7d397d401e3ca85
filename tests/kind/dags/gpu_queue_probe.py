"""A task on the gpu queue that sleeps: enough for KEDA to scale the gpu pool from zero (kind suite)."""

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    "gpu_queue_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "ml-platform", "retries": 0},
):
    BashOperator(task_id="hold_a_gpu_worker", bash_command="sleep 60", queue="gpu")
