"""The stack API client (``sluice.stack.api.AirflowApi``) plus the reads only tests make."""

from __future__ import annotations

from typing import Any

from sluice.stack.api import AirflowApi


class AdminApi(AirflowApi):
    """``AirflowApi`` with every run of a DAG and a task's tries (what tests assert on)."""

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        return list(self._call("GET", path, params={"map_index": map_index})["task_instances"])
