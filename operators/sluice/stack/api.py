"""A small client of Airflow's public REST API (v2), as a user of the local stack would drive it.

``sluice demo --stack`` runs a DAG with ``AirflowApi.run``; the tests' extra reads (every run of a DAG, a task's
tries) are in tests/support/airflow_api.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from sluice.stack.errors import StackError

FINISHED = {"success", "failed"}


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        token = httpx.post(f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        if token.status_code >= 400:
            raise StackError(f"login as {username} at {self.base_url} failed: {token.status_code} {token.text}")
        self.http = httpx.Client(
            base_url=f"{self.base_url}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise StackError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """The DAG once the dag-processor has parsed it (a fresh stack parses in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                dag: dict[str, Any] = response.json()
                return dag
            if time.monotonic() > deadline:
                errors = self._call("GET", "/importErrors").get("import_errors", [])
                raise StackError(f"DAG {dag_id} not parsed after {timeout:.0f} s; import errors: {errors}")
            time.sleep(1)

    def unpause(self, dag_id: str, paused: bool = False) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        run_id: str | None = None,
        logical_date: str | None = None,
    ) -> str:
        """A manual run; ``logical_date`` = the DAG's next one makes the scheduler skip that scheduled run."""
        body: dict[str, Any] = {"conf": conf or {}, "logical_date": logical_date}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self._call("GET", path, params={"limit": 1000})["task_instances"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                states = {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}
                raise StackError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s: {states}")
            time.sleep(1)

    def run(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        timeout: float = 6 * 3600,
        started: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Run a DAG once, now, and return its finished run (``dag_run_id``, ``state``, ...).

        Waits for the DAG to be parsed, triggers a manual run at the DAG's next logical date (the scheduler then
        skips that scheduled run, so the run is not doubled), unpauses the DAG so the scheduler runs it, tells
        ``started`` the run's id, waits for the end, and pauses the DAG again if it was paused.
        """
        dag = self.wait_for_dag(dag_id, timeout=120)
        run_id = self.trigger(dag_id, conf=conf, logical_date=dag.get("next_dagrun_logical_date"))
        self.unpause(dag_id)
        try:
            if started is not None:
                started(run_id)
            return self.wait_for_run(dag_id, run_id, timeout=timeout)
        finally:
            if dag.get("is_paused"):
                self.unpause(dag_id, paused=True)
