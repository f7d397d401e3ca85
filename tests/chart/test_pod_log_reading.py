"""The api-server reads a running KubernetesExecutor task's live log through the Kubernetes API.

Airflow's KubernetesExecutor.get_task_log, which the api-server runs for a task instance in state running, lists the
task's pod by its labels in [kubernetes_executor] namespace and reads its ``pods/log``: the api-server needs a token,
a Role that allows exactly that, and the same executor and namespace settings as the scheduler that made the pod
(tests/chart_runtime/test_under_rbac.py reads such a log on the running install, and proves the refusal).
"""

from __future__ import annotations

import pytest

from tests.chart.render import RenderError, by_kind, env_of, get, render_chart

ACCOUNT = {"kind": "ServiceAccount", "name": "sluice-api-server", "namespace": "ml"}


def api_server(docs: list[dict]) -> dict:
    return get(docs, "Deployment", "sluice-api-server")["spec"]["template"]["spec"]


def test_the_api_server_account_mounts_a_token_by_default(default_docs) -> None:
    assert get(default_docs, "ServiceAccount", "sluice-api-server")["automountServiceAccountToken"] is True
    assert api_server(default_docs)["serviceAccountName"] == "sluice-api-server"
    assert "automountServiceAccountToken" not in api_server(default_docs)  # the account decides


def test_the_pod_log_reader_role_may_only_read_pods_and_their_logs(default_docs) -> None:
    role = get(default_docs, "Role", "sluice-pod-log-reader")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    assert "namespace" not in role["metadata"]  # the release namespace, where KubernetesExecutor pods run


def test_the_pod_log_reader_is_bound_to_the_api_server_alone(default_docs) -> None:
    binding = get(default_docs, "RoleBinding", "sluice-pod-log-reader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "sluice-pod-log-reader",
    }
    assert binding["subjects"] == [ACCOUNT]


def test_the_api_server_is_bound_to_no_other_role(default_docs) -> None:
    roles = {b["roleRef"]["name"] for b in by_kind(default_docs, "RoleBinding") if ACCOUNT in b["subjects"]}
    assert roles == {"sluice-pod-log-reader"}


def test_the_api_server_looks_for_task_pods_where_the_scheduler_creates_them(default_docs) -> None:
    scheduler = env_of(get(default_docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]["containers"][0])
    env = env_of(api_server(default_docs)["containers"][0])
    assert "KubernetesExecutor" in env["AIRFLOW__CORE__EXECUTOR"].split(",")  # it loads the executor by that name
    for name in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"):
        assert env[name] == scheduler[name], name
    assert env["AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE"] == "ml"
    assert "AIRFLOW__KUBERNETES_EXECUTOR__IN_CLUSTER" not in env  # Airflow's default: the mounted token


def test_allow_pod_log_reading_false_gives_the_api_server_no_token_and_no_role() -> None:
    docs = render_chart({"apiServer": {"allowPodLogReading": False}}, show_only=["templates/rbac.yaml"])
    assert get(docs, "ServiceAccount", "sluice-api-server")["automountServiceAccountToken"] is False
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == ["sluice-pod-launcher"]
    assert [b["metadata"]["name"] for b in by_kind(docs, "RoleBinding")] == ["sluice-pod-launcher"]


def test_without_the_kubernetes_executor_there_is_no_pod_log_to_read() -> None:
    docs = render_chart({"executor": "CeleryExecutor"}, show_only=["templates/rbac.yaml"])
    assert get(docs, "ServiceAccount", "sluice-api-server")["automountServiceAccountToken"] is False
    assert "sluice-pod-log-reader" not in {d["metadata"]["name"] for d in docs}


def test_a_launcher_namespace_does_not_move_the_pod_log_reader() -> None:
    docs = render_chart({"launcher": {"namespace": "ml-steps"}}, show_only=["templates/rbac.yaml"])
    readers = [d for d in docs if d["metadata"]["name"] == "sluice-pod-log-reader"]
    assert [(d["kind"], d["metadata"].get("namespace")) for d in readers] == [("Role", None), ("RoleBinding", None)]


def test_allow_pod_log_reading_must_be_a_boolean() -> None:
    with pytest.raises(RenderError) as refused:
        render_chart({"apiServer": {"allowPodLogReading": "yes"}})
    assert "allowPodLogReading" in str(refused.value)
