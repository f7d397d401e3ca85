"""A task on the kubernetes queue: the cluster policy must route it to the KubernetesExecutor (kind suite)."""

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    "kubernetes_queue_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"owner": "ml-platform", "retries": 0},
):
    BashOperator(task_id="in_its_own_pod", bash_command="echo routed", queue="kubernetes")
