"""kind suite: a real cluster, the real images, KEDA and the chart installed with ``helm install --wait``.

Runs wherever ``kind`` and a container engine (docker or podman) exist; elsewhere every test here is
skipped with one reason line. ``SLUICE_KIND_KEEP=1`` keeps the cluster for debugging. Network needed:
KEDA's chart and the base images are pulled (this suite never runs in the offline CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.render import helm

REPO = Path(__file__).resolve().parents[2]
KEDA_CHART_VERSION = "2.16.1"
NAMESPACE = "sluice"


def missing_prerequisite() -> str | None:
    if not shutil.which("kind"):
        return "kind not found on PATH (install kind and a container engine to run the kind suite)"
    for engine in ("docker", "podman"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True).returncode == 0:
            return None
    return "no container engine answers (docker info / podman info failed): the kind suite needs one"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_prerequisite()
    if reason is None:
        return
    for item in items:
        if "tests/kind/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


def run(*cmd: str, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def kubectl(*args: str, timeout: int = 300) -> str:
    return run(
        "kubectl", "--context", os.environ["SLUICE_KIND_CONTEXT"], "-n", NAMESPACE, *args, timeout=timeout
    ).stdout


def wait_until(predicate, what: str, timeout: float = 600, every: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def kind_cluster() -> Iterator[str]:
    name = f"sluice-{uuid.uuid4().hex[:6]}"
    run(
        "kind",
        "create",
        "cluster",
        "--name",
        name,
        "--config",
        str(REPO / "tests/kind/kind-config.yaml"),
        "--wait",
        "300s",
    )
    os.environ["SLUICE_KIND_CONTEXT"] = f"kind-{name}"
    try:
        yield name
    finally:
        if os.environ.get("SLUICE_KIND_KEEP") != "1":
            run("kind", "delete", "cluster", "--name", name)


@pytest.fixture(scope="session")
def images(kind_cluster: str) -> dict[str, str]:
    engine = "docker" if shutil.which("docker") else "podman"
    refs = {"airflow": "sluice-airflow:kind", "ml-steps": "sluice-ml-steps:kind"}
    run(
        engine,
        "build",
        "-t",
        "sluice-airflow:kind-base",
        "-f",
        "images/airflow/Dockerfile",
        ".",
        cwd=REPO,
        timeout=1800,
    )
    # The suite's probe DAGs ride in a thin layer on top, so every component (and KubernetesExecutor pod)
    # parses them; the platform image itself carries only dags/.
    probe = "FROM sluice-airflow:kind-base\nCOPY --chown=airflow:0 dags /opt/airflow/dags/kind\n"
    run(engine, "build", "-t", refs["airflow"], "-f", "-", ".", input=probe, cwd=REPO / "tests/kind", timeout=600)
    run(engine, "build", "-t", refs["ml-steps"], "images/ml-steps", cwd=REPO, timeout=1800)
    for ref in refs.values():
        run("kind", "load", "docker-image", ref, "--name", kind_cluster)
    return refs


@pytest.fixture(scope="session")
def release(kind_cluster: str, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    context = os.environ["SLUICE_KIND_CONTEXT"]
    run(helm(), "repo", "add", "kedacore", "https://kedacore.github.io/charts", "--force-update")
    run(
        helm(),
        "install",
        "keda",
        "kedacore/keda",
        "--version",
        KEDA_CHART_VERSION,
        "--namespace",
        "keda",
        "--create-namespace",
        "--kube-context",
        context,
        "--wait",
    )
    values = tmp_path_factory.mktemp("kind") / "kind-values.yaml"
    values.write_text(
        "images:\n  airflow: {repository: sluice-airflow, tag: kind, pullPolicy: Never}\n"
        "stepImages:\n  ml-steps: {repository: sluice-ml-steps, tag: kind}\n"
        # Steps run as pods (the chart's kubernetes launcher) on MinIO, as on a real cluster.
        "artifacts: {root: s3://sluice-artifacts/runs, secretName: sluice-artifacts}\n"
        "launcher: {type: kubernetes}\n"
    )
    run("kubectl", "--context", context, "create", "namespace", NAMESPACE)
    run("kubectl", "--context", context, "-n", NAMESPACE, "apply", "-f", str(REPO / "tests/kind/minio.yaml"))
    run(
        "kubectl",
        "--context",
        context,
        "-n",
        NAMESPACE,
        "wait",
        "--for=condition=complete",
        "job/minio-bucket",
        "--timeout=300s",
    )
    run(
        helm(),
        "install",
        "sluice",
        str(REPO / "charts/sluice"),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kube-context",
        context,
        "-f",
        str(REPO / "deploy/values-dev.yaml"),
        "-f",
        str(values),
        "--wait",
        "--timeout",
        "15m",
        timeout=1200,
    )
    return "sluice"
