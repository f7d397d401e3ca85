"""Every bad values file is refused with a message that names the field and the fix."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.chart.render import CHART, RenderError, helm, render_chart

POOL = {"name": "p", "queues": ["q"]}
TWO_GI = {"limits": {"memory": "2Gi"}}
EXTERNAL = {"postgresql": {"enabled": False}, "redis": {"enabled": False}, "data": {"brokerUrl": "redis://r:6379/0"}}

CASES = {
    "two pools claiming one queue": (
        {"pools": [POOL, {"name": "o", "queues": ["q"]}]},
        'queue "q" is already served by pool "p"; give each queue to exactly one pool',
    ),
    "a pool with no queues": ({"pools": [{"name": "p", "queues": []}]}, "/pools/0/queues"),
    "the kubernetes queue claimed by a pool": (
        {"pools": [{"name": "p", "queues": ["kubernetes"]}]},
        'queue "kubernetes" routes to the KubernetesExecutor (routing.kubernetesQueue)',
    ),
    "KEDA on without PostgreSQL": (
        {**EXTERNAL, "data": {**EXTERNAL["data"], "metadataConnection": "mysql://u:secret@db/airflow"}},
        "keda.enabled needs a PostgreSQL metadata database",
    ),
    "min greater than max": (
        {"pools": [{**POOL, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}]},
        "autoscaling.minReplicas (5) is greater than autoscaling.maxReplicas (2)",
    ),
    "a GPU count without a resource name": (
        {"profiles": {"g": {"gpu": {"count": 1}}}},
        "profiles.g.gpu: count is 1 but resource is empty; name the vendor resource",
    ),
    "a pool name that is not a DNS label": ({"pools": [{"name": "High_Mem", "queues": ["q"]}]}, "/pools/0/name"),
    "a grace period shorter than the longest task": (
        {"pools": [{**POOL, "terminationGracePeriodSeconds": 60, "maxTaskDurationSeconds": 600}]},
        "terminationGracePeriodSeconds (60) is shorter than maxTaskDurationSeconds (600)",
    ),
    "a grace period longer than the visibility timeout": (
        {"pools": [{**POOL, "terminationGracePeriodSeconds": 7200}], "celery": {"visibilityTimeout": 3600}},
        "exceeds celery.visibilityTimeout (3600)",
    ),
    "an unknown pool field": ({"pools": [{**POOL, "concurency": 4}]}, "additional properties 'concurency' not allowed"),
    "a negative replica count": (
        {"pools": [{**POOL, "autoscaling": {"minReplicas": -1}}]},
        "/pools/0/autoscaling/minReplicas",
    ),
    "a memory quantity that is not one": ({"profiles": {"x": {"memory": "lots"}}}, "/profiles/x/memory"),
    "the latest image tag": ({"images": {"airflow": {"repository": "r/a", "tag": "latest"}}}, "/images/airflow/tag"),
    "a step image digest that is not one": (
        {"stepImages": {"ml-steps": {"repository": "r/s", "tag": "1", "digest": "sha256:abc"}}},
        "/stepImages/ml-steps/digest",
    ),
    "an unknown executor": ({"executor": "CeleryKubernetesExecutor"}, "/executor"),
    "no database at all": ({"postgresql": {"enabled": False}}, "set data.metadataSecretName"),
    "no broker at all": ({"redis": {"enabled": False}}, "set data.brokerUrlSecretName"),
    "git-sync without a repository": ({"dags": {"gitSync": {"enabled": True}}}, "dags.gitSync.repo is empty"),
    "a quote in a queue name": ({"pools": [{"name": "p", "queues": ["a'b"]}]}, "/pools/0/queues/0"),
    "Helm hooks for the Jobs": ({"migrations": {"useHelmHooks": True}}, "migrations.useHelmHooks was removed"),
    "shell text in the admin username": ({"createUserJob": {"username": "admin; rm -rf /"}}, "/createUserJob/username"),
    "remote logs on a local artifact root": (
        {"artifacts": {"root": "/data/artifacts"}},
        'logs.remote: the remote log folder "/data/artifacts/logs" is not an object-store URL',
    ),
    "a pool name too long for its worker label": ({"pools": [{"name": "p" * 57, "queues": ["q"]}]}, "/pools/0/name"),
    "a pool name too long for the HPA KEDA creates": (
        {"pools": [{"name": "p" * 45, "queues": ["q"]}]},
        f'the HPA KEDA creates for this pool would be named "keda-hpa-sluice-worker-{"p" * 45}" (68 characters)',
    ),
    "a typo under a pool's resources.limits": (
        {"pools": [{**POOL, "resources": {"limits": {"memroy": "2Gi"}}}]},
        "additional properties 'memroy' not allowed",
    ),
    "a request above its limit": (
        {"pools": [{"name": "default", "queues": ["q"], "resources": {"requests": {"memory": "4Gi"}, **TWO_GI}}]},
        "pools[0] (default).resources: requests.memory (4Gi) exceeds limits.memory (2Gi); lower the request",
    ),
    "a ServiceMonitor without the metrics exporter": (
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        "metrics.serviceMonitor.enabled is true but metrics.enabled is false",
    ),
    "the default grace period longer than the visibility timeout": (
        {"pools": [POOL], "celery": {"visibilityTimeout": 300}},
        "terminationGracePeriodSeconds (600) exceeds celery.visibilityTimeout (300)",
    ),
    "a zero grace period with a longer task": (
        {"pools": [{**POOL, "terminationGracePeriodSeconds": 0, "maxTaskDurationSeconds": 60}]},
        "terminationGracePeriodSeconds (0) is shorter than maxTaskDurationSeconds (60)",
    ),
    "an env item without a name": ({"env": [{"value": "x"}]}, "/env/0"),
    "a GPU resource that is not an extended resource name": (
        {"profiles": {"g": {"gpu": {"count": 1, "resource": "nvidia gpu!"}}}},
        "/profiles/g/gpu/resource",
    ),
    "a zero profile cpu": ({"profiles": {"x": {"cpu": 0}}}, "/profiles/x/cpu"),
    "an empty ingress host": ({"ingress": {"host": ""}}, "/ingress/host"),
    "a parallelism below the pools' slots": (
        {"scheduler": {"parallelism": 53}},
        "scheduler.parallelism (53) is below the derived 54",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_values_are_refused(case: str) -> None:
    values, message = CASES[case]
    with pytest.raises(RenderError) as refused:
        render_chart(values, show_only=["templates/configmap-platform.yaml"])
    assert message in str(refused.value)


def test_the_template_refuses_a_pool_name_too_long_for_its_worker_label_and_says_why() -> None:
    """The schema refuses it first; the template's own check (which holds without the schema) says why."""
    proc = subprocess.run(
        [helm(), "template", "sluice", str(CHART), "--skip-schema-validation", "--values", "-"],
        input=yaml.safe_dump({"pools": [{"name": "p" * 57, "queues": ["q"]}]}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "at most 56 characters" in proc.stderr and "worker-<name>" in proc.stderr


def test_refusal_never_prints_a_database_password() -> None:
    values, _ = CASES["KEDA on without PostgreSQL"]
    with pytest.raises(RenderError) as refused:
        render_chart(values)
    assert "secret" not in str(refused.value)
