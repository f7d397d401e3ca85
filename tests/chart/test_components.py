"""Every component renders, with one executor list, the policy and the platform file everywhere."""

from __future__ import annotations

import base64

import yaml
from sluice.platform import parse_platform

from tests.chart.render import by_kind, containers, env_of, get, pod_specs, render_chart, render_notes

AIRFLOW_DEPLOYMENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]


def airflow_containers(docs):
    for name, spec in pod_specs(docs):
        for container in containers(spec):
            if container["image"].startswith("ghcr.io/sluice-ml/airflow:"):
                yield name, container


def test_each_airflow_component_has_a_deployment(default_docs) -> None:
    for component in AIRFLOW_DEPLOYMENTS:
        deployment = get(default_docs, "Deployment", f"sluice-{component}")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["airflow", component]


def test_scheduler_may_run_more_than_one_replica() -> None:
    docs = render_chart({"scheduler": {"replicas": 2}}, show_only=["templates/scheduler.yaml"])
    assert docs[0]["spec"]["replicas"] == 2


def test_executor_is_identical_in_every_airflow_container(default_docs) -> None:
    seen = {env_of(c)["AIRFLOW__CORE__EXECUTOR"] for _, c in airflow_containers(default_docs)}
    assert seen == {"CeleryExecutor,KubernetesExecutor"}


def test_kubernetes_executor_pod_template_uses_the_same_executor(default_docs) -> None:
    platform_cm = get(default_docs, "ConfigMap", "sluice-platform")
    template = yaml.safe_load(platform_cm["data"]["pod_template.yaml"])
    assert env_of(template["spec"]["containers"][0])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor,KubernetesExecutor"


def test_routing_policy_is_enabled_in_every_airflow_container(default_docs) -> None:
    platform_cm = get(default_docs, "ConfigMap", "sluice-platform")
    assert "from sluice.policy import task_policy" in platform_cm["data"]["airflow_local_settings.py"]
    for name, container in airflow_containers(default_docs):
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/opt/airflow/config/airflow_local_settings.py" in mounts, name


def test_platform_file_is_mounted_and_named_everywhere(default_docs) -> None:
    for name, container in airflow_containers(default_docs):
        assert env_of(container)["SLUICE_PLATFORM_FILE"] == "/opt/sluice/platform/platform.yaml", name
        assert env_of(container)["AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE"] == (
            "/opt/sluice/platform/pod_template.yaml"
        ), name


def test_the_platform_configmap_is_mounted_as_a_directory_so_updates_reach_running_pods(default_docs) -> None:
    """The kubelet never updates a subPath mount; a directory mount it does (tests/unit/test_platform_live.py)."""
    for name, container in airflow_containers(default_docs):
        mounts = [m for m in container["volumeMounts"] if m["name"] == "platform"]
        directory = [m for m in mounts if m["mountPath"] == "/opt/sluice/platform"]
        assert directory == [{"name": "platform", "mountPath": "/opt/sluice/platform", "readOnly": True}], name
        by_sub_path = {m["mountPath"]: m.get("subPath") for m in mounts if "subPath" in m}
        assert by_sub_path == {"/opt/airflow/config/airflow_local_settings.py": "airflow_local_settings.py"}, name


def test_rendered_platform_yaml_is_what_the_sluice_package_loads(default_docs) -> None:
    data = yaml.safe_load(get(default_docs, "ConfigMap", "sluice-platform")["data"]["platform.yaml"])
    platform = parse_platform(data, source="platform.yaml")
    assert [p.name for p in platform.pools] == ["default", "highmem", "gpu"]
    assert platform.launcher.type == "kubernetes"
    assert platform.launcher.namespace == "ml"
    assert platform.profile("gpu").gpu.resource == "nvidia.com/gpu"


def test_no_secret_value_sits_in_a_configmap(default_docs) -> None:
    secrets = [base64.b64decode(v).decode() for d in by_kind(default_docs, "Secret") for v in d["data"].values()]
    assert secrets
    for cm in by_kind(default_docs, "ConfigMap"):
        text = yaml.safe_dump(cm["data"])
        assert not [s for s in secrets if s in text], cm["metadata"]["name"]


def test_bundled_databases_render_for_dev(default_docs) -> None:
    get(default_docs, "StatefulSet", "sluice-postgresql")
    get(default_docs, "Deployment", "sluice-redis")


def test_external_databases_replace_the_bundled_ones() -> None:
    values = {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "data": {"metadataSecretName": "prod-db", "brokerUrlSecretName": "prod-redis"},
    }
    docs = render_chart(values)
    assert not [d for d in docs if d["metadata"]["name"] in ("sluice-postgresql", "sluice-redis")]
    scheduler = get(docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(scheduler)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]["secretKeyRef"]["name"] == "prod-db"
    assert env["AIRFLOW__CELERY__BROKER_URL"]["secretKeyRef"]["name"] == "prod-redis"


def test_scheduler_and_workers_may_launch_pods_in_the_release_namespace_only(default_docs) -> None:
    role = get(default_docs, "Role", "sluice-pod-launcher")
    pods = next(r for r in role["rules"] if r["resources"] == ["pods"])
    assert {"create", "watch", "delete", "patch"} <= set(pods["verbs"])
    binding = get(default_docs, "RoleBinding", "sluice-pod-launcher")
    assert {s["name"] for s in binding["subjects"]} == {"sluice-scheduler", "sluice-worker", "sluice-triggerer"}
    assert not by_kind(default_docs, "ClusterRole") and not by_kind(default_docs, "ClusterRoleBinding")


def test_services_expose_the_api_server(default_docs) -> None:
    service = get(default_docs, "Service", "sluice-api-server")
    assert service["spec"]["ports"][0]["port"] == 8080


def test_ingress_is_optional_and_points_at_the_api_server() -> None:
    docs = render_chart({"ingress": {"enabled": True, "host": "ml.example.org"}}, show_only=["templates/ingress.yaml"])
    backend = docs[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert docs[0]["spec"]["rules"][0]["host"] == "ml.example.org"
    assert backend["name"] == "sluice-api-server"


def test_git_sync_sidecar_delivers_dags_when_enabled() -> None:
    docs = render_chart({"dags": {"gitSync": {"enabled": True, "repo": "https://git.example.org/dags.git"}}})
    scheduler = get(docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]
    assert "git-sync" in [c["name"] for c in scheduler["containers"]]
    assert env_of(scheduler["containers"][0])["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags/repo/dags"


def test_dags_are_baked_into_the_image_by_default(default_docs) -> None:
    scheduler = get(default_docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]
    assert [c["name"] for c in scheduler["containers"]] == ["scheduler"]


def test_metrics_exporter_and_optional_service_monitor() -> None:
    docs = render_chart({"metrics": {"serviceMonitor": {"enabled": True}}}, show_only=["templates/metrics.yaml"])
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "ServiceMonitor"}


def test_pdbs_cover_scheduler_api_server_and_every_pool(default_docs) -> None:
    names = {d["metadata"]["name"] for d in by_kind(default_docs, "PodDisruptionBudget")}
    assert names == {
        "sluice-scheduler",
        "sluice-api-server",
        "sluice-worker-default",
        "sluice-worker-highmem",
        "sluice-worker-gpu",
    }


def test_network_policies_deny_by_default(default_docs) -> None:
    deny = get(default_docs, "NetworkPolicy", "sluice-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]


def test_notes_name_the_ui_and_the_pools() -> None:
    notes = render_notes()
    assert "port-forward svc/sluice-api-server 8080:8080" in notes
    assert "default: queues default; concurrency 8" in notes
    assert "gpu: queues gpu; concurrency 1; replicas 0..2" in notes
    assert "get secret sluice-admin -o jsonpath='{.data.password}'" in notes
    assert "Task logs: s3://sluice-artifacts/logs" in notes


def test_artifact_credentials_reach_every_airflow_container() -> None:
    """The operator reads step results from the store, so workers need the store's credentials too."""
    docs = render_chart({"artifacts": {"root": "s3://b", "secretName": "minio-creds"}})
    for name, container in airflow_containers(docs):
        assert {"secretRef": {"name": "minio-creds"}} in container.get("envFrom", []), (name, container["name"])
    template = yaml.safe_load(get(docs, "ConfigMap", "sluice-platform")["data"]["pod_template.yaml"])
    assert template["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "minio-creds"}}]


GIT_SYNC = {"dags": {"gitSync": {"enabled": True, "repo": "https://git.example.org/dags.git"}}}
BUNDLED_IMAGES = {"git-sync": "gitSync", "postgresql": "postgres", "redis": "redis", "statsd-exporter": "statsd"}


def test_bundled_images_default_to_if_not_present() -> None:
    docs = render_chart(GIT_SYNC)
    seen = set()
    for name, spec in pod_specs(docs):
        for container in containers(spec):
            assert container.get("imagePullPolicy") == "IfNotPresent", (name, container["name"])
            seen.add(container["name"])
    assert set(BUNDLED_IMAGES) <= seen


def test_bundled_images_use_their_own_pull_policy() -> None:
    images = {image: {"pullPolicy": "Always"} for image in BUNDLED_IMAGES.values()}
    docs = render_chart({**GIT_SYNC, "images": images})
    seen = set()
    for name, spec in pod_specs(docs):
        for container in containers(spec):
            if container["name"] in BUNDLED_IMAGES:
                assert container["imagePullPolicy"] == "Always", (name, container["name"])
                seen.add(container["name"])
            else:
                assert container["imagePullPolicy"] == "IfNotPresent", (name, container["name"])
    assert seen == set(BUNDLED_IMAGES)


def pod_template(docs: list[dict]) -> dict:
    """The KubernetesExecutor's pod template, as the scheduler reads it."""
    return yaml.safe_load(get(docs, "ConfigMap", "sluice-platform")["data"]["pod_template.yaml"])


# Labels Argo CD tracks its applications' resources by (application.instanceLabelKey: the first is the default).
ARGO_CD_TRACKING_LABELS = {"app.kubernetes.io/instance", "argocd.argoproj.io/instance"}


def test_kubernetes_executor_task_pods_carry_no_argo_cd_tracking_label(default_docs) -> None:
    """A task pod has no owner: with the release's tracking label Argo CD takes it for a resource of its application
    that git does not hold, and prune deletes it mid-run. Sluice's own labels still select it."""
    labels = pod_template(default_docs)["metadata"]["labels"]
    assert not ARGO_CD_TRACKING_LABELS & set(labels), labels
    assert labels["sluice.io/release"] == "sluice" and labels["app.kubernetes.io/component"] == "kubernetes-task"


def test_step_pods_carry_no_argo_cd_tracking_label() -> None:
    """The kubernetes launcher labels step pods itself; nothing the chart renders adds a tracking label."""
    from tests.chart.test_network_flows import step_pod_labels

    assert not ARGO_CD_TRACKING_LABELS & set(step_pod_labels())


def in_namespace(docs: list[dict], kind: str, name: str, namespace: str) -> dict:
    found = [
        d for d in by_kind(docs, kind) if (d["metadata"]["name"], d["metadata"].get("namespace")) == (name, namespace)
    ]
    assert found, f"no {kind} {name} in {namespace}"
    return found[0]


def test_a_launcher_namespace_gets_the_step_account_and_the_workers_rights_to_launch_pods_there() -> None:
    """Step pods run in launcher.namespace: without a Role bound to the workers there, the first step gets 403."""
    docs = render_chart({"launcher": {"namespace": "ml-steps"}}, show_only=["templates/rbac.yaml"])
    account = in_namespace(docs, "ServiceAccount", "sluice-step", "ml-steps")
    assert account["automountServiceAccountToken"] is False
    role = in_namespace(docs, "Role", "sluice-pod-launcher", "ml-steps")
    pods = next(r for r in role["rules"] if r["resources"] == ["pods"])
    assert {"create", "get", "watch", "delete"} <= set(pods["verbs"])
    binding = in_namespace(docs, "RoleBinding", "sluice-pod-launcher", "ml-steps")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "sluice-pod-launcher",
    }
    assert {"kind": "ServiceAccount", "name": "sluice-worker", "namespace": "ml"} in binding["subjects"]


def test_the_release_namespace_as_launcher_namespace_renders_nothing_elsewhere() -> None:
    for namespace in ("", "ml"):
        docs = render_chart({"launcher": {"namespace": namespace}}, show_only=["templates/rbac.yaml"])
        assert {d["metadata"].get("namespace", "ml") for d in docs} == {"ml"}
        assert [d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")].count("sluice-step") == 1
