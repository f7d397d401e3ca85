"""A `helm upgrade` restarts only the Deployments that must restart for what changed.

A Deployment rolls when its pod template changes; a worker roll drains every worker (warm shutdown, up to the pool's
grace period: 3,600 s for gpu). What each component reads of the platform ConfigMap, and when:

- platform.yaml (pools, profiles, step images, launcher, artifact store): the sluice package, per task and per DAG
  parse, re-read whenever the file changed (tests/unit/test_platform_live.py); mounted as a directory, which the kubelet
  keeps current. Nothing restarts for it.
- pod_template.yaml: the scheduler's KubernetesExecutor, at each task launch, from the same directory mount.
- airflow_local_settings.py: imported once per Airflow process, mounted by subPath: its checksum is on every Airflow
  Deployment.

Everything else a component needs restarting for is in its own pod template (image, args, env, resources), so
comparing the rendered pod templates before and after a change is exactly what Kubernetes compares.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from tests.chart.render import CHART, by_kind, get, render_chart

AIRFLOW = {
    "sluice-api-server",
    "sluice-scheduler",
    "sluice-dag-processor",
    "sluice-triggerer",
    "sluice-worker-default",
    "sluice-worker-highmem",
    "sluice-worker-gpu",
}
POOLS: list[dict[str, Any]] = yaml.safe_load((CHART / "values.yaml").read_text())["pools"]


def pod_templates(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}


def restarted(values: dict[str, Any], default_docs: list[dict[str, Any]]) -> set[str]:
    before, after = pod_templates(default_docs), pod_templates(render_chart(values))
    assert before.keys() == after.keys()
    return {name for name in before if before[name] != after[name]}


def platform_yaml(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(get(docs, "ConfigMap", "sluice-platform")["data"]["platform.yaml"])


def with_pool(index: int, **changes: Any) -> list[dict[str, Any]]:
    pools = [dict(pool) for pool in POOLS]
    pools[index] = {**pools[index], **changes}
    return pools


def test_a_new_step_image_tag_restarts_nothing_and_reaches_the_platform_file(default_docs) -> None:
    values = {"stepImages": {"ml-steps": {"repository": "ghcr.io/sluice-ml/ml-steps", "tag": "0.2.0"}}}
    assert restarted(values, default_docs) == set()
    assert platform_yaml(render_chart(values))["stepImages"]["ml-steps"]["tag"] == "0.2.0"


@pytest.mark.parametrize(
    "values",
    [
        {"stepImages": {"ml-steps": {"digest": "sha256:" + "ab" * 32}}},
        {"profiles": {"default": {"cpu": "1", "memory": "1100Mi"}}},
        {"launcher": {"startupTimeoutSeconds": 900, "deferrable": True}},
        {"artifacts": {"cache": {"enabled": False}}},
        {"routing": {"kubernetesQueue": "k8s"}},
        {"kubernetesExecutor": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}},
    ],
    ids=["step image digest", "a profile", "launcher", "step cache", "kubernetes queue", "k8s executor pod template"],
)
def test_what_is_read_live_from_the_platform_configmap_restarts_nothing(values, default_docs) -> None:
    assert restarted(values, default_docs) == set()


def test_a_pools_concurrency_restarts_that_pools_workers_and_the_scheduler_only(default_docs) -> None:
    """Its workers run `--concurrency 4` now; the scheduler's [core] parallelism counts its slots."""
    assert restarted({"pools": with_pool(1, concurrency=4)}, default_docs) == {
        "sluice-worker-highmem",
        "sluice-scheduler",
    }


def test_a_pools_max_replicas_restarts_only_the_scheduler(default_docs) -> None:
    """KEDA's ScaledObject takes the new bound; no worker reads it, so none drains for it."""
    pools = with_pool(2, autoscaling={"minReplicas": 0, "maxReplicas": 6, "cooldownPeriod": 600})
    assert restarted({"pools": pools}, default_docs) == {"sluice-scheduler"}


def test_a_new_pool_starts_its_workers_and_restarts_only_the_scheduler(default_docs) -> None:
    pools = [*POOLS, {"name": "etl", "queues": ["etl"], "concurrency": 2, "autoscaling": {"maxReplicas": 2}}]
    docs = render_chart({"pools": pools})
    assert "sluice-worker-etl" in pod_templates(docs)
    before, after = pod_templates(default_docs), pod_templates(docs)
    assert {name for name in before if before[name] != after[name]} == {"sluice-scheduler"}
    assert [p["name"] for p in platform_yaml(docs)["pools"]][-1] == "etl", "the dag-processor's policy sees it live"


def test_a_new_executor_list_restarts_every_airflow_component_and_nothing_else(default_docs) -> None:
    assert restarted({"executor": "CeleryExecutor"}, default_docs) == AIRFLOW


def test_a_new_platform_image_restarts_every_airflow_component(default_docs) -> None:
    assert restarted({"images": {"airflow": {"tag": "3.3.2-sluice.0.2.0"}}}, default_docs) == AIRFLOW


def test_every_airflow_component_carries_the_checksum_of_what_it_reads_only_at_start(default_docs) -> None:
    """airflow_local_settings.py: imported once per process, and a subPath mount, which the kubelet never updates."""
    settings = get(default_docs, "ConfigMap", "sluice-platform")["data"]["airflow_local_settings.py"]
    digest = hashlib.sha256(settings.rstrip("\n").encode()).hexdigest()
    for deployment in by_kind(default_docs, "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        checksums = {k: v for k, v in annotations.items() if k.startswith("checksum/")}
        expected = {"checksum/airflow-local-settings": digest} if deployment["metadata"]["name"] in AIRFLOW else {}
        assert checksums == expected, deployment["metadata"]["name"]
