"""Login (FAB), where task logs live, and what every Airflow container needs from the metadata Secret."""

from __future__ import annotations

import yaml

from tests.chart.render import containers, env_of, get, pod_specs, render_chart

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
EXTERNAL = {
    "postgresql": {"enabled": False},
    "redis": {"enabled": False},
    "data": {"metadataSecretName": "my-db", "brokerUrl": "redis://r:6379/0"},
}


def airflow_containers(docs):
    """Every container running the platform image, the KubernetesExecutor's pod template included."""
    for name, spec in pod_specs(docs):
        for container in containers(spec):
            if container["image"].startswith("ghcr.io/sluice-ml/airflow:"):
                yield name, container
    template = yaml.safe_load(get(docs, "ConfigMap", "sluice-platform")["data"]["pod_template.yaml"])
    yield "pod_template", template["spec"]["containers"][0]


def test_every_airflow_container_uses_the_fab_auth_manager(default_docs) -> None:
    for name, container in airflow_containers(default_docs):
        assert env_of(container)["AIRFLOW__CORE__AUTH_MANAGER"] == FAB, name


def test_a_task_records_its_pods_ip_so_the_api_server_reaches_its_live_log(default_docs) -> None:
    for name, container in airflow_containers(default_docs):
        env = env_of(container)
        assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "sluice.hostname.pod_ip", name
        assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}, name


def test_finished_task_logs_go_to_the_artifact_store(default_docs) -> None:
    for name, container in airflow_containers(default_docs):
        env = env_of(container)
        assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True", name
        assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == "s3://sluice-artifacts/logs", name


def test_the_remote_log_folder_and_connection_may_be_named() -> None:
    values = {"logs": {"remote": {"baseFolder": "s3://logs-bucket/airflow", "connId": "aws_logs"}}}
    env = env_of(next(c for _, c in airflow_containers(render_chart(values))))
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == "s3://logs-bucket/airflow"
    assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == "aws_logs"


def test_remote_logs_may_be_turned_off() -> None:
    docs = render_chart({"logs": {"remote": {"enabled": False}}, "artifacts": {"root": "/data/artifacts"}})
    for name, container in airflow_containers(docs):
        assert "AIRFLOW__LOGGING__REMOTE_LOGGING" not in env_of(container), name


def _secret_keys(docs, secret: str) -> set[str]:
    keys = set()
    for _, container in airflow_containers(docs):
        for value in env_of(container).values():
            ref = value.get("secretKeyRef") if isinstance(value, dict) else None
            if ref and ref["name"] == secret:
                keys.add(ref["key"])
    return keys


def test_without_keda_an_existing_database_secret_needs_only_its_connection_key() -> None:
    docs = render_chart({**EXTERNAL, "keda": {"enabled": False}})
    assert _secret_keys(docs, "my-db") == {"connection"}


def test_with_keda_the_workers_hand_keda_the_keda_connection_key() -> None:
    docs = render_chart(EXTERNAL)
    assert _secret_keys(docs, "my-db") == {"connection", "keda-connection"}
    worker = get(docs, "Deployment", "sluice-worker-default")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(worker)["SLUICE_KEDA_DB_CONN"] == {"secretKeyRef": {"name": "my-db", "key": "keda-connection"}}
