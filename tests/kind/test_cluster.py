"""Sluice on a real kind cluster: install, run the example pipeline through the REST API, routing,
per-pool scaling, upgrade safety. Skipped (one reason line) where kind or a container engine is missing."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
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


def trigger_and_wait(api: str, dag_id: str, timeout: float = 900) -> dict[str, str]:
    call(api, "PATCH", f"/dags/{dag_id}", {"is_paused": False})
    run_id = call(api, "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
    wait_until(
        lambda: call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"] in ("success", "failed"),
        f"{dag_id} to finish",
        timeout=timeout,
    )
    tis = call(api, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: ti["state"] for ti in tis}


def replicas(pool: str) -> int:
    deployment = json.loads(kubectl("get", "deployment", f"sluice-worker-{pool}", "-o", "json"))
    return deployment["status"].get("readyReplicas", 0)


def test_example_pipeline_succeeds_on_the_cluster(api: str) -> None:
    states = trigger_and_wait(api, "ml_training_pipeline")
    assert set(states.values()) == {"success"}, states


def test_gpu_pool_scales_from_zero_when_its_queue_has_work_and_back(api: str) -> None:
    assert replicas("gpu") == 0
    processor = kubectl("get", "pods", "-l", "app.kubernetes.io/component=dag-processor", "-o", "name")
    pod = processor.strip().split("/")[-1]
    kubectl("cp", str(REPO / "tests/kind/dags/gpu_queue_probe.py"), f"{pod}:/opt/airflow/dags/gpu_queue_probe.py")
    wait_until(lambda: call(api, "GET", "/dags/gpu_queue_probe").get("dag_id") == "gpu_queue_probe", "the probe DAG")
    call(api, "PATCH", "/dags/gpu_queue_probe", {"is_paused": False})
    call(api, "POST", "/dags/gpu_queue_probe/dagRuns", {"logical_date": None})
    wait_until(lambda: replicas("gpu") >= 1, "the gpu pool to scale from zero")
    wait_until(lambda: replicas("gpu") == 0, "the gpu pool to scale back to zero", timeout=900)


def test_helm_upgrade_keeps_the_generated_secrets(release: str) -> None:
    before = kubectl("get", "secret", "sluice-airflow", "-o", "jsonpath={.data}")
    run(
        helm(),
        "upgrade",
        "sluice",
        str(REPO / "charts/sluice"),
        "--namespace",
        NAMESPACE,
        "--reuse-values",
        "--kube-context",
        os.environ["SLUICE_KIND_CONTEXT"],
        "--wait",
        "--timeout",
        "15m",
        timeout=1200,
    )
    assert kubectl("get", "secret", "sluice-airflow", "-o", "jsonpath={.data}") == before
