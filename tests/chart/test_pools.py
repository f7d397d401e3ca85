"""Per-pool workers: their queues, scaling (KEDA or HPA), grace, pacing and scale-in safety."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice.platform import Pool
from sluice.scaling import pool_load_sql

from tests.chart.render import REPO, RenderError, env_of, get, render_chart

SHOW = ["templates/workers.yaml"]


def worker(docs, pool: str) -> dict:
    return get(docs, "Deployment", f"sluice-worker-{pool}")


def test_each_pool_has_a_worker_deployment_consuming_only_its_queues(default_docs) -> None:
    for pool, queues, concurrency in (("default", "default", "8"), ("highmem", "highmem", "2"), ("gpu", "gpu", "1")):
        args = worker(default_docs, pool)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:7] == ["airflow", "celery", "worker", "--queues", queues, "--concurrency", concurrency]


def test_each_worker_names_its_celery_node_after_its_pod(default_docs) -> None:
    """The liveness probe pings exactly this node; Kubernetes expands $(POD_NAME) from the worker's env."""
    container = worker(default_docs, "default")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][7:] == ["--celery-hostname", "celery@$(POD_NAME)"]
    assert "POD_NAME" in env_of(container)
    assert container["livenessProbe"]["exec"]["command"][-1].endswith("-d celery@$POD_NAME")


def test_a_pool_serving_several_queues_lists_them_all() -> None:
    pools = [{"name": "etl", "queues": ["extract", "load"], "concurrency": 4}]
    args = worker(render_chart({"pools": pools}, show_only=SHOW), "etl")["spec"]["template"]["spec"]["containers"][0]
    assert args["args"][3:5] == ["--queues", "extract,load"]


def test_each_pool_gets_a_keda_scaled_object_with_its_own_query(default_docs) -> None:
    scaled = get(default_docs, "ScaledObject", "sluice-worker-highmem")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql"
    assert "queue IN ('highmem')" in trigger["metadata"]["query"]
    assert "COUNT(*)::decimal / 2" in trigger["metadata"]["query"]
    assert trigger["metadata"]["targetQueryValue"] == "1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "sluice-worker-highmem"


def test_keda_query_excludes_kubernetes_executor_tasks_null_safely(default_docs) -> None:
    query = get(default_docs, "ScaledObject", "sluice-worker-default")["spec"]["triggers"][0]["metadata"]["query"]
    assert "executor IS DISTINCT FROM 'KubernetesExecutor'" in query
    assert "!=" not in query and "<>" not in query


def test_keda_query_is_the_one_the_sluice_package_computes(default_docs) -> None:
    query = get(default_docs, "ScaledObject", "sluice-worker-default")["spec"]["triggers"][0]["metadata"]["query"]
    assert query == pool_load_sql(Pool(name="default", queues=["default"], concurrency=8))


def test_chart_copy_of_the_query_is_byte_identical_to_the_packages() -> None:
    chart_copy = (REPO / "charts" / "sluice" / "files" / "pool-load.sql").read_bytes()
    assert chart_copy == (REPO / "operators" / "sluice" / "sql" / "pool-load.sql").read_bytes()


def test_keda_reads_the_database_from_the_worker_env(default_docs) -> None:
    scaled = get(default_docs, "ScaledObject", "sluice-worker-default")
    assert scaled["spec"]["triggers"][0]["metadata"]["connectionFromEnv"] == "SLUICE_KEDA_DB_CONN"
    env = env_of(worker(default_docs, "default")["spec"]["template"]["spec"]["containers"][0])
    assert env["SLUICE_KEDA_DB_CONN"]["secretKeyRef"]["key"] == "keda-connection"


def test_gpu_pool_scales_from_zero_and_tolerates_gpu_taints(default_docs) -> None:
    scaled = get(default_docs, "ScaledObject", "sluice-worker-gpu")
    assert scaled["spec"]["minReplicaCount"] == 0
    tolerations = worker(default_docs, "gpu")["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_hpa_replaces_keda_when_keda_is_off() -> None:
    """Only for pools that keep a worker: an HPA cannot scale to zero (tests/chart/test_pools_without_keda.py)."""
    docs = render_chart({"keda": {"enabled": False}}, show_only=SHOW)
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert not [d for d in docs if d["kind"] == "ScaledObject"]
    assert [(h["metadata"]["name"], h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for h in hpas] == [
        ("sluice-worker-default", 1, 4)
    ]


def test_pool_grace_period_comes_from_values(default_docs) -> None:
    assert worker(default_docs, "gpu")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3600
    assert worker(default_docs, "default")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 600


def test_workers_have_no_pre_stop_hook_that_could_cut_the_drain(default_docs) -> None:
    container = worker(default_docs, "default")["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in container


def test_scale_in_pacing_comes_from_values() -> None:
    pools = [
        {
            "name": "p",
            "queues": ["q"],
            "autoscaling": {"scaleDown": {"stabilizationWindowSeconds": 900, "podsPerPeriod": 2, "periodSeconds": 120}},
        }
    ]
    scaled = get(render_chart({"pools": pools}, show_only=SHOW), "ScaledObject", "sluice-worker-p")
    down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down == {"stabilizationWindowSeconds": 900, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 120}]}


def test_hpa_fallback_gets_the_same_pacing() -> None:
    pools = [{"name": "p", "queues": ["q"], "autoscaling": {"scaleDown": {"podsPerPeriod": 3}}}]
    hpa = render_chart({"pools": pools, "keda": {"enabled": False}}, show_only=SHOW)[1]
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["value"] == 3


def test_workers_know_their_pod_for_the_deletion_cost_keeper(default_docs) -> None:
    spec = worker(default_docs, "default")["spec"]["template"]
    env = env_of(spec["spec"]["containers"][0])
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] == "sluice.worker.celery_config.CELERY_CONFIG"
    assert spec["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "0"


def test_worker_pods_run_with_the_account_that_may_patch_pods(default_docs) -> None:
    assert worker(default_docs, "default")["spec"]["template"]["spec"]["serviceAccountName"] == "sluice-worker"


def test_pool_without_autoscaling_gets_fixed_replicas() -> None:
    pools = [{"name": "p", "queues": ["q"], "autoscaling": {"enabled": False, "minReplicas": 3}}]
    docs = render_chart({"pools": pools}, show_only=SHOW)
    assert [d["kind"] for d in docs] == ["Deployment"] and docs[0]["spec"]["replicas"] == 3


def test_scaling_index_is_built_concurrently_and_idempotently() -> None:
    assert (
        Path(REPO / "operators" / "sluice" / "sql" / "pool-load-index.sql")
        .read_text()
        .startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS")
    )


def test_an_explicit_zero_grace_period_stays_zero() -> None:
    pools = [{"name": "p", "queues": ["q"], "terminationGracePeriodSeconds": 0}]
    spec = worker(render_chart({"pools": pools}, show_only=SHOW), "p")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 0


def test_a_pool_name_of_56_characters_keeps_its_component_label_within_63() -> None:
    name = "p" * 56
    values = {"pools": [{"name": name, "queues": ["q"]}], "keda": {"enabled": False}}
    deployment = worker(render_chart(values, show_only=SHOW), name)
    component = deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    assert component == f"worker-{name}" and len(component) == 63


def keda_hpa_names(docs: list[dict]) -> list[str]:
    """The HPA KEDA creates for each ScaledObject is `keda-hpa-<ScaledObject name>`; its webhook refuses one over 63."""
    return [f"keda-hpa-{d['metadata']['name']}" for d in docs if d["kind"] == "ScaledObject"]


def test_a_pool_whose_keda_hpa_name_would_pass_63_is_refused_with_the_name_and_the_fix() -> None:
    name = "p" * 45
    with pytest.raises(RenderError) as refused:
        render_chart({"pools": [{"name": name, "queues": ["q"]}]}, show_only=SHOW)
    message = str(refused.value)
    assert f"pools[0] ({name})" in message
    assert f'"keda-hpa-sluice-worker-{name}" (68 characters)' in message
    assert "at most 40 characters" in message and "release name" in message and "fullnameOverride" in message


def test_the_longest_pool_name_follows_the_release_name() -> None:
    release = "r" * 21  # the objects are named <release>-sluice-...: 28 characters before -worker-<pool>
    longest = render_chart({"pools": [{"name": "p" * 18, "queues": ["q"]}]}, show_only=SHOW, name=release)
    assert [len(n) for n in keda_hpa_names(longest)] == [63]
    with pytest.raises(RenderError, match="at most 18 characters"):
        render_chart({"pools": [{"name": "p" * 19, "queues": ["q"]}]}, show_only=SHOW, name=release)


def test_a_long_pool_name_fits_without_keda_or_without_autoscaling() -> None:
    """No ScaledObject, no keda-hpa-... name: only the worker label (56 characters) bounds the pool name."""
    name = "p" * 56
    render_chart({"pools": [{"name": name, "queues": ["q"]}], "keda": {"enabled": False}}, show_only=SHOW)
    pools = [{"name": name, "queues": ["q"], "autoscaling": {"enabled": False}}]
    assert worker(render_chart({"pools": pools}, show_only=SHOW), name)


def test_fullname_override_names_the_objects_and_makes_room_for_a_longer_pool() -> None:
    name = "p" * 45
    docs = render_chart({"fullnameOverride": "s", "pools": [{"name": name, "queues": ["q"]}]})
    assert keda_hpa_names(docs) == [f"keda-hpa-s-worker-{name}"]
    assert get(docs, "Deployment", "s-scheduler") and get(docs, "ServiceAccount", "s-worker")
