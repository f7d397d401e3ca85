"""Probe DAG for the chart runtime test, baked into the platform image's DAG folder as a thin layer.

``smoke_burst``: more tasks at once than Airflow's stock ``[core] parallelism`` (32) lets a scheduler queue,
on the default pool, plus one task on each other pool's queue and one on the kubernetes queue (the
KubernetesExecutor's pod).
"""

from __future__ import annotations

import time
from datetime import datetime

from airflow.sdk import DAG, task

BURST = 48

with DAG("smoke_burst", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_tasks=64):

    @task(queue="default")
    def nap(i: int) -> int:
        time.sleep(4)
        return i

    @task(queue="highmem")
    def on_highmem() -> str:
        time.sleep(4)
        return "highmem"

    @task(queue="gpu")
    def on_gpu() -> str:
        time.sleep(4)
        return "gpu"

    @task(queue="kubernetes")
    def on_kubernetes() -> str:
        return "kubernetes"

    nap.expand(i=list(range(BURST)))
    on_highmem()
    on_gpu()
    on_kubernetes()
