"""Sluice on a real kind cluster: install, the example pipeline with its steps as pods (MinIO artifacts),
kubernetes-queue routing, per-pool scaling, upgrade safety. Skipped, with one reason line, where kind or a
container engine is missing (as on the development machine: this code has not run there)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.chart.render import helm
from tests.kind.conftest import NAMESPACE, REPO, kubectl, run, wait_until

pytestmark = pytest.mark.kind


@pytest.fixture(scope="module")
def api(release: str) -> Iterator[str]:
    forward = subprocess.Popen(
        [
            "kubectl",
            "--context",
            os.environ["SLUICE_KIND_CONTEXT"],
            "-n",
            NAMESPACE,
            "port-forward",
            "svc/sluice-api-server",
            "18080:8080",
        ]
    )
    time.sleep(3)
    yield "http://127.0.0.1:18080"
    forward.terminate()


def token(api: str) -> str:
    secret = json.loads(kubectl("get", "secret", "sluice-admin", "-o", "json"))
    password = base64.b64decode(secret["data"]["password"]).decode()
    body = json.dumps({"username": "admin", "password": password}).encode()
    request = urllib.request.Request(f"{api}/auth/token", body, {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(request).read())["access_token"]


def call(api: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{api}/api/v2{path}",
        json.dumps(body).encode() if body is not None else None,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token(api)}"},
        method=method,
    )
    return json.loads(urllib.request.urlopen(request).read() or b"{}")


def trigger(api: str, dag_id: str) -> str:
    wait_until(lambda: _exists(api, dag_id), f"DAG {dag_id} to be parsed", timeout=300)
    call(api, "PATCH", f"/dags/{dag_id}", {"is_paused": False})
    return call(api, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]


def _exists(api: str, dag_id: str) -> bool:
    try:
        return call(api, "GET", f"/dags/{dag_id}").get("dag_id") == dag_id
    except urllib.error.HTTPError:
        return False


def finish(api: str, dag_id: str, run_id: str, timeout: float = 900) -> list[dict]:
    wait_until(
        lambda: call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"] in ("success", "failed"),
        f"{dag_id} to finish",
        timeout=timeout,
    )
    return call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]


def ready_workers(pool: str) -> int:
    deployment = json.loads(kubectl("get", "deployment", f"sluice-worker-{pool}", "-o", "json"))
    return deployment["status"].get("readyReplicas", 0) or 0


def test_example_pipeline_succeeds_with_its_steps_run_as_pods(api: str) -> None:
    tis = finish(api, "ml_training_pipeline", trigger(api, "ml_training_pipeline"))
    assert {ti["task_id"]: ti["state"] for ti in tis} == dict.fromkeys(
        ["ingest_csv", "ingest_sql", "join", "validate", "featurize", "train", "evaluate", "publish"], "success"
    )
    scheduled = kubectl("get", "events", "--field-selector", "reason=Scheduled", "-o", "json")
    step_pods = {
        e["involvedObject"]["name"]
        for e in json.loads(scheduled)["items"]
        if e["involvedObject"]["name"].startswith("ml-training-pipeline-")
    }
    assert len(step_pods) >= 8, step_pods


def test_a_task_on_the_kubernetes_queue_runs_on_the_kubernetes_executor(api: str) -> None:
    tis = finish(api, "kubernetes_queue_probe", trigger(api, "kubernetes_queue_probe"))
    assert [(ti["state"], ti["executor"]) for ti in tis] == [("success", "KubernetesExecutor")]


def test_default_pool_scales_up_under_queued_work_and_back_down(api: str) -> None:
    assert ready_workers("default") == 1
    run_id = trigger(api, "default_pool_load")
    wait_until(lambda: ready_workers("default") == 3, "the default pool to scale to its max (3)")
    finish(api, "default_pool_load", run_id)
    wait_until(lambda: ready_workers("default") == 1, "the default pool to scale back to 1", timeout=900)


def test_gpu_pool_scales_from_zero_when_its_queue_has_work_and_back(api: str) -> None:
    assert ready_workers("gpu") == 0
    run_id = trigger(api, "gpu_queue_probe")
    wait_until(lambda: ready_workers("gpu") >= 1, "the gpu pool to scale from zero")
    finish(api, "gpu_queue_probe", run_id)
    wait_until(lambda: ready_workers("gpu") == 0, "the gpu pool to scale back to zero", timeout=900)


def test_helm_upgrade_keeps_secrets_and_running_tasks(api: str, release: str) -> None:
    before = kubectl("get", "secret", "sluice-airflow", "-o", "jsonpath={.data}")
    run_id = trigger(api, "long_task")
    wait_until(
        lambda: (
            [
                ti["state"]
                for ti in call(api, "GET", f"/dags/long_task/dagRuns/{run_id}/taskInstances")["task_instances"]
            ]
            == ["running"]
        ),
        "the long task to run",
    )
    # A change to every Airflow pod's env rolls every component: workers drain warmly. (A platform.yaml change, a
    # profile or step image, rolls nothing: pods read it from their ConfigMap mount; tests/chart/test_restarts.py.)
    run(
        helm(),
        "upgrade",
        "sluice",
        str(REPO / "charts/sluice"),
        "--namespace",
        NAMESPACE,
        "--reuse-values",
        "--set",
        "tuning.minHeartbeatInterval=4",
        "--kube-context",
        os.environ["SLUICE_KIND_CONTEXT"],
        "--wait",
        "--timeout",
        "15m",
        timeout=1200,
    )
    tis = finish(api, "long_task", run_id)
    assert [(ti["state"], ti["try_number"]) for ti in tis] == [("success", 1)]
    assert kubectl("get", "secret", "sluice-airflow", "-o", "jsonpath={.data}") == before
