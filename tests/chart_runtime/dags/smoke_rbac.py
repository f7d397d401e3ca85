"""Probe DAGs for the chart runtime's RBAC tests (tests/chart_runtime/test_under_rbac.py), baked with smoke_probes.

``smoke_live_log``: one task on the kubernetes queue (a KubernetesExecutor pod) that prints a line and holds until
the Airflow Variable named by the run's conf ``release`` exists, so its live log can be read while it runs.
``smoke_rbac``: one ML step (a step pod, created by the kubernetes launcher on a worker) and one task on the
kubernetes queue (a pod the scheduler's KubernetesExecutor creates): the two ways the install creates pods.
Neither retries: a refused pod fails its task at once.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Variable, get_current_context, task
from sluice.operators import MLStepOperator
from sluice.platform import sluice_home

DEMO_DATA = Path(os.environ.get("SLUICE_DEMO_DATA") or sluice_home() / "demo-data")
HOLD_SECONDS = 300

with DAG("smoke_live_log", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(queue="kubernetes", retries=0)
    def hold() -> str:
        release = get_current_context()["dag_run"].conf["release"]
        print(f"smoke-live-log: running, waiting for Variable {release}", flush=True)
        deadline = time.monotonic() + HOLD_SECONDS
        while Variable.get(release, default=None) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Variable {release} never appeared in {HOLD_SECONDS} s")
            time.sleep(1)
        print("smoke-live-log: released", flush=True)
        return release

    hold()

with DAG("smoke_rbac", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    MLStepOperator(
        task_id="step",
        image="ml-steps",
        command=["sluice-step", "ingest"],
        step_params={"source": str(DEMO_DATA / "measurements.csv")},
        outputs={"data": "data.parquet"},
        cache=False,
        retries=0,
    )

    @task(queue="kubernetes", retries=0)
    def on_kubernetes() -> str:
        return "kubernetes"

    on_kubernetes()
