"""Secrets generated once and kept; every container locked down."""

from __future__ import annotations

import yaml

from tests.chart.lookup_api import LookupApi
from tests.chart.render import by_kind, containers, env_of, get, pod_specs, render_chart


def test_generated_secrets_survive_helm_uninstall_and_upgrade(default_docs) -> None:
    for name in ("sluice-airflow", "sluice-metadata", "sluice-admin"):
        assert get(default_docs, "Secret", name)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_an_upgrade_keeps_the_data_of_every_generated_secret(tmp_path) -> None:
    """The upgrade's lookups find the Secrets the install generated (tests.chart.lookup_api answers them as a
    cluster would) and render the same data; the kind suite checks two real upgrades too."""
    install = render_chart()
    generated = [
        d for d in by_kind(install, "Secret") if "helm.sh/resource-policy" in d["metadata"].get("annotations", {})
    ]
    assert {d["metadata"]["name"] for d in generated} == {"sluice-airflow", "sluice-metadata", "sluice-admin"}
    with LookupApi.for_render(install) as api:
        for secret in generated:
            api.store(secret)
        upgrade = api.render(tmp_path)
    for secret in generated:
        assert get(upgrade, "Secret", secret["metadata"]["name"])["data"] == secret["data"], secret["metadata"]["name"]


def test_every_render_without_lookup_data_generates_fresh_values() -> None:
    first = get(render_chart(show_only=["templates/secrets.yaml"]), "Secret", "sluice-airflow")["data"]
    second = get(render_chart(show_only=["templates/secrets.yaml"]), "Secret", "sluice-airflow")["data"]
    assert first["fernet-key"] != second["fernet-key"], "values are random, which is why lookup must keep them"


def test_existing_secrets_are_used_instead_of_generated_ones() -> None:
    values = {"secrets": {"existingSecretName": "my-airflow"}, "createUserJob": {"passwordSecretName": "my-admin"}}
    docs = render_chart(values)
    assert "sluice-airflow" not in {d["metadata"]["name"] for d in by_kind(docs, "Secret")}
    assert "sluice-admin" not in {d["metadata"]["name"] for d in by_kind(docs, "Secret")}
    env = env_of(get(docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]["containers"][0])
    assert env["AIRFLOW__CORE__FERNET_KEY"]["secretKeyRef"]["name"] == "my-airflow"


def test_every_pod_runs_non_root_with_runtime_default_seccomp(default_docs) -> None:
    for name, spec in pod_specs(default_docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name


def test_every_container_drops_all_capabilities_and_escalation(default_docs) -> None:
    for name, spec in pod_specs(default_docs):
        for container in containers(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])


def test_every_container_has_resources(default_docs) -> None:
    for name, spec in pod_specs(default_docs):
        for container in containers(spec):
            assert container["resources"].get("requests") and container["resources"].get("limits"), (
                name,
                container["name"],
            )


def test_no_image_uses_latest_or_no_tag(default_docs) -> None:
    for name, spec in pod_specs(default_docs):
        for container in containers(spec):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (name, image)


BUNDLED = {"sluice-postgresql": "StatefulSet", "sluice-redis": "Deployment", "sluice-statsd": "Deployment"}


def test_no_pod_runs_on_the_namespace_default_service_account(default_docs) -> None:
    accounts = {d["metadata"]["name"] for d in by_kind(default_docs, "ServiceAccount")}
    for name, spec in pod_specs(default_docs):
        assert spec.get("serviceAccountName") in accounts, name


def test_bundled_services_run_on_their_own_account_without_a_token(default_docs) -> None:
    for name, kind in BUNDLED.items():
        spec = get(default_docs, kind, name)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == name
        assert spec["automountServiceAccountToken"] is False, name
        assert get(default_docs, "ServiceAccount", name)["automountServiceAccountToken"] is False, name


def test_bundled_service_accounts_exist_only_with_their_component() -> None:
    values = {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "data": {"metadataSecretName": "db", "brokerUrlSecretName": "broker"},
        "metrics": {"enabled": False},
    }
    accounts = {d["metadata"]["name"] for d in by_kind(render_chart(values), "ServiceAccount")}
    assert accounts and not accounts & set(BUNDLED)


def test_bundled_service_accounts_carry_no_cloud_identity_annotations() -> None:
    annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sluice"}
    docs = render_chart({"serviceAccount": {"annotations": annotations}}, show_only=["templates/rbac.yaml"])
    for account in by_kind(docs, "ServiceAccount"):
        expected = None if account["metadata"]["name"] in BUNDLED else annotations
        assert account["metadata"].get("annotations") == expected, account["metadata"]["name"]


def test_kubernetes_executor_task_pods_run_on_an_account_without_rights_or_token(default_docs) -> None:
    """Task code on the kubernetes queue is user code: the workers' account would let it create, patch and delete
    any pod of the namespace."""
    template = yaml.safe_load(get(default_docs, "ConfigMap", "sluice-platform")["data"]["pod_template.yaml"])
    assert template["spec"]["serviceAccountName"] == "sluice-kubernetes-task"
    assert template["spec"]["automountServiceAccountToken"] is False
    assert get(default_docs, "ServiceAccount", "sluice-kubernetes-task")["automountServiceAccountToken"] is False
    bound = {s["name"] for binding in by_kind(default_docs, "RoleBinding") for s in binding["subjects"]}
    assert "sluice-kubernetes-task" not in bound
