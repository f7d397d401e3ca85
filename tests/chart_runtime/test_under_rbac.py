"""The install under Kubernetes RBAC: every API request of every pod is authorized by the rendered ServiceAccounts,
Roles and RoleBindings (the mock of the Kubernetes API, tests/support/kube_api.py: no cluster can run here), each
pod with its own ServiceAccount's token or none.

Mutations are made as ``kubectl apply`` makes them: the Role or RoleBinding is edited in the install's objects,
and the API stand-in's next decision reads it. Each mutation is undone before its test ends, and proven undone.
This module runs last in the directory (by name), so its final test sees every request the session made. Its
first tests need no install (the stand-in over a render: they run under ``make test-fast`` too).
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sluice.stack.api import AirflowApi

from tests.chart.render import render_chart
from tests.chart_runtime.install import KUBECONFIG, NAMESPACE, RELEASE, Installed
from tests.chart_runtime.kubelet import Objects, Pod
from tests.support.kube_api import KubeApi, Refusal, ServiceAccountMissing, request_info

RUN_BOUND = 300.0
LOG_BOUND = 180.0  # seconds for a KubernetesExecutor pod to start and print, on a loaded 2-core machine
WORKER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-worker"
SCHEDULER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-scheduler"
API_SERVER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-api-server"


@pytest.fixture(scope="module")
def admin(installed: Installed) -> AirflowApi:
    return AirflowApi(installed.api_url, "admin", installed.secret(f"{RELEASE}-admin", "password"))


@contextmanager
def applied(installed: Installed, kind: str, name: str, edit: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """``kubectl apply`` of an edited object for the block, then of the original again."""
    live = installed.rendered(kind, name)
    original = copy.deepcopy(live)
    edit(live)
    try:
        yield
    finally:
        live.clear()
        live.update(original)


def task_log(admin: AirflowApi, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
    response = admin.http.get(path, params={"full_content": True}, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text[:500]
    return response.text


def run_dag(admin: AirflowApi, dag_id: str, conf: dict[str, Any] | None = None) -> tuple[str, dict[str, str]]:
    admin.wait_for_dag(dag_id, timeout=180)
    admin.unpause(dag_id)
    run_id = admin.trigger(dag_id, conf=conf, run_id=f"rbac-{uuid.uuid4().hex[:8]}")
    admin.wait_for_run(dag_id, run_id, RUN_BOUND)
    return run_id, {t["task_id"]: t["state"] for t in admin.task_instances(dag_id, run_id)}


def state_mismatch(admin: AirflowApi, dag_id: str, run_id: str, task_id: str) -> str:
    """What the scheduler recorded when the executor failed the task before it ran (the task's audit log)."""
    logs = admin._call("GET", "/eventLogs", params={"dag_id": dag_id, "run_id": run_id, "task_id": task_id})
    return "\n".join(e.get("extra") or "" for e in logs["event_logs"] if e["event"] == "state mismatch")


def token_of(pod: Pod) -> str | None:
    """The bearer token the kubelet mounted into the pod's first container, if any."""
    mounted = pod.containers[0].root / KUBECONFIG.lstrip("/")
    if not mounted.exists():
        return None
    return str(json.loads(mounted.read_text())["users"][0]["user"]["token"])


# ---- the stand-in's authorizer, without an install ----------------------------------------------------------------
VERBS = [  # (method, path, query) -> (verb, resource, subresource, name, namespace), as Kubernetes' RequestInfoFactory
    ("POST", "/api/v1/namespaces/ml/pods", "", ("create", "pods", "", "", "ml")),
    ("GET", "/api/v1/namespaces/ml/pods", "labelSelector=a%3Db", ("list", "pods", "", "", "ml")),
    ("GET", "/api/v1/namespaces/ml/pods", "watch=true", ("watch", "pods", "", "", "ml")),
    ("GET", "/api/v1/namespaces/ml/pods", "watch=1&fieldSelector=metadata.name%3Dp", ("watch", "pods", "", "p", "ml")),
    ("GET", "/api/v1/namespaces/ml/pods/p", "", ("get", "pods", "", "p", "ml")),
    ("GET", "/api/v1/namespaces/ml/pods/p/log", "follow=true", ("get", "pods", "log", "p", "ml")),
    ("PATCH", "/api/v1/namespaces/ml/pods/p", "", ("patch", "pods", "", "p", "ml")),
    ("PUT", "/api/v1/namespaces/ml/pods/p", "", ("update", "pods", "", "p", "ml")),
    ("DELETE", "/api/v1/namespaces/ml/pods/p", "", ("delete", "pods", "", "p", "ml")),
    ("DELETE", "/api/v1/namespaces/ml/pods", "", ("deletecollection", "pods", "", "", "ml")),
    ("GET", "/api/v1/events", "watch=true", ("watch", "events", "", "", "")),
    ("GET", "/api/v1/namespaces/ml", "", ("get", "namespaces", "", "ml", "ml")),
    ("GET", "/apis/apps/v1/namespaces/ml/deployments/d/scale", "", ("get", "deployments", "scale", "d", "ml")),
    ("GET", "/api", "", ("get", "", "", "", "")),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), VERBS)
def test_the_stand_in_derives_verbs_as_kubernetes_does(method: str, path: str, query: str, expected: tuple) -> None:
    request = request_info(method, path, parse_qs(query))
    assert (request.verb, request.resource, request.subresource, request.name, request.namespace) == expected


def test_the_stand_in_refuses_with_the_status_a_cluster_sends(prove) -> None:
    """Who may watch pods, by the rendered Role; a rule for ``pods`` does not cover ``pods/log``; no token is
    ``system:anonymous``, a token nobody issued is 401; discovery is open to every authenticated user."""
    docs = render_chart({}, namespace=NAMESPACE)
    api = KubeApi(lambda pod: None, lambda n: None, lambda n, f: iter(()), objects=Objects(docs), namespace=NAMESPACE)
    try:
        pods = f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods"

        def get(path: str, account: str | None, **params: str) -> httpx.Response:
            token = {"Authorization": f"Bearer {api.token_for(NAMESPACE, account)}"} if account else {}
            return httpx.get(path, params=params, headers=token, timeout=30)

        assert get(pods, f"{RELEASE}-scheduler", watch="true", timeoutSeconds="1").status_code == 200
        watch = get(pods, f"{RELEASE}-dag-processor", watch="true")
        assert watch.status_code == 403
        assert watch.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'pods is forbidden: User "system:serviceaccount:ml:{RELEASE}-dag-processor" cannot watch '
            'resource "pods" in API group "" in the namespace "ml"',
            "reason": "Forbidden",
            "details": {"kind": "pods"},
            "code": 403,
        }
        assert get(f"{pods}/p/log", f"{RELEASE}-api-server").status_code == 404  # allowed, no such pod
        role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == f"{RELEASE}-pod-log-reader")
        role["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]  # pods, not pods/log
        assert get(f"{pods}/p/log", f"{RELEASE}-api-server").status_code == 403
        assert get(pods, None).json()["message"].startswith('pods is forbidden: User "system:anonymous" cannot list')
        bogus = httpx.get(pods, headers={"Authorization": "Bearer nobody-issued-this"}, timeout=30)
        assert (bogus.status_code, bogus.json()["reason"]) == (401, "Unauthorized")
        assert get(f"{api.url}/api", f"{RELEASE}-dag-processor").status_code == 200
        assert get(f"{api.url}/api", None).status_code == 403 and get(f"{api.url}/version", None).status_code == 200
        assert len(api.refused) == 5
    finally:
        api.shutdown()
    prove("watch by a Role-less account, pods/log under a pods-only rule, anonymous: 403 Status; a bogus token: 401")


# ---- the api-server's identity without pod log reading -----------------------------------------------------------
def test_without_pod_log_reading_the_api_server_has_no_token_and_its_identity_is_refused(prove) -> None:
    """allowPodLogReading false (or no KubernetesExecutor): what the api-server could do, decided by the stand-in over
    that render: the kubelet mounts it nothing, and even its account's own token may not list pods or read a log."""
    for values in ({"apiServer": {"allowPodLogReading": False}}, {"executor": "CeleryExecutor"}):
        docs = render_chart(values, namespace=NAMESPACE)
        api = KubeApi(
            lambda pod: None,
            lambda name: None,
            lambda name, follow: iter(()),
            objects=Objects(docs),
            namespace=NAMESPACE,
        )
        try:
            spec = next(
                d for d in docs if d["metadata"]["name"] == f"{RELEASE}-api-server" and d["kind"] == "Deployment"
            )
            assert api.credentials(NAMESPACE, spec["spec"]["template"]["spec"], Path("/nonexistent"), KUBECONFIG) == {}
            headers = {"Authorization": f"Bearer {api.token_for(NAMESPACE, f'{RELEASE}-api-server')}"}
            pods = f"{api.url}/api/v1/namespaces/{NAMESPACE}/pods"
            listed = httpx.get(pods, params={"labelSelector": "dag_id=x"}, headers=headers, timeout=30)
            log = httpx.get(f"{pods}/some-task-pod/log", params={"container": "base"}, headers=headers, timeout=30)
            assert (listed.status_code, log.status_code) == (403, 403)
            assert log.json()["message"] == (
                f'pods "some-task-pod" is forbidden: User "{API_SERVER}" cannot get resource "pods/log" in API group '
                '"" in the namespace "ml"'
            )
        finally:
            api.shutdown()
    prove(f"allowPodLogReading false / CeleryExecutor: no token mounted; {API_SERVER}'s list pods, get pods/log → 403")


def test_an_account_that_does_not_automount_gets_no_token_from_the_kubelet(tmp_path: Path, prove) -> None:
    """automountServiceAccountToken: false on the worker's account: a worker pod started after that gets nothing to
    talk to the API with (its launcher then fails before any request: tests/launchers, "no Kubernetes API
    credentials"); the pod spec's own setting wins over the account's."""
    docs = render_chart({}, namespace=NAMESPACE)
    api = KubeApi(lambda pod: None, lambda n: None, lambda n, f: iter(()), objects=Objects(docs), namespace=NAMESPACE)
    try:
        worker = next(
            d for d in docs if d["metadata"]["name"] == f"{RELEASE}-worker-default" and d["kind"] == "Deployment"
        )
        spec = worker["spec"]["template"]["spec"]
        assert api.credentials(NAMESPACE, spec, tmp_path / "before", KUBECONFIG).keys() == {KUBECONFIG}
        next(d for d in docs if d["metadata"]["name"] == f"{RELEASE}-worker" and d["kind"] == "ServiceAccount")[
            "automountServiceAccountToken"
        ] = False
        assert api.credentials(NAMESPACE, spec, tmp_path / "after", KUBECONFIG) == {}
        opted_in = {**spec, "automountServiceAccountToken": True}
        assert api.credentials(NAMESPACE, opted_in, tmp_path / "pod", KUBECONFIG).keys() == {KUBECONFIG}
        ghost = {**spec, "serviceAccountName": "nobody"}
        with pytest.raises(ServiceAccountMissing, match='serviceaccount "nobody" not found'):
            api.credentials(NAMESPACE, ghost, tmp_path / "ghost", KUBECONFIG)
    finally:
        api.shutdown()
    prove(
        "worker account automount false → no token mounted; the pod spec's true wins; a missing account: FailedCreate"
    )


# ---- the api-server reads a running KubernetesExecutor task's log ------------------------------------------------
def _wait_running_pod(installed: Installed, admin: AirflowApi, run_id: str) -> Pod:
    deadline = time.monotonic() + LOG_BOUND
    while True:
        states = {t["task_id"]: t for t in admin.task_instances("smoke_live_log", run_id)}
        ti = states.get("hold")
        if ti and ti["state"] == "running":
            pod = installed.kubelet.pod_by_ip(ti["hostname"]) if ti.get("hostname") else None
            if pod is not None and pod.phase == "Running":
                return pod
        assert ti is None or ti["state"] in (None, "scheduled", "queued", "running"), ti
        assert time.monotonic() < deadline, f"hold not running with its pod after {LOG_BOUND:.0f} s: {ti}"
        time.sleep(1)


def _log_when(admin: AirflowApi, run_id: str, done: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + LOG_BOUND
    while True:
        text = task_log(admin, "smoke_live_log", run_id, "hold")
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(2)


@pytest.mark.integration  # the installed chart
def test_the_api_server_reads_a_running_kubernetes_executor_tasks_log(installed: Installed, admin, prove) -> None:
    release = f"smoke_release_{uuid.uuid4().hex[:8]}"
    admin.wait_for_dag("smoke_live_log", timeout=180)
    admin.unpause("smoke_live_log")
    run_id = admin.trigger("smoke_live_log", conf={"release": release}, run_id=f"live-{uuid.uuid4().hex[:8]}")
    try:
        pod = _wait_running_pod(installed, admin, run_id)
        assert pod.workload.startswith("Pod/") and pod.spec["serviceAccountName"] == f"{RELEASE}-kubernetes-task"
        before = installed.api.authorized[API_SERVER]
        live = _log_when(admin, run_id, lambda text: "smoke-live-log: running" in text)
        assert "smoke-live-log: running" in live, live[-3000:]
        assert "Found logs through kube API" in live, live[-3000:]
        assert installed.api.authorized[API_SERVER] > before  # the api-server's own identity, authorized

        # Mutation: the api-server's pod-log rule removed (kubectl apply of the Role without it).
        def read_pods_only(role: dict[str, Any]) -> None:
            role["rules"] = [r for r in role["rules"] if "pods/log" not in r["resources"]]

        with (
            installed.api.expect_refusals() as refused,
            applied(installed, "Role", f"{RELEASE}-pod-log-reader", read_pods_only),
        ):
            cut = task_log(admin, "smoke_live_log", run_id, "hold")
        assert "smoke-live-log: running" not in cut, cut[-3000:]
        assert "Reading from k8s pod logs failed" in cut and "Forbidden" in cut, cut[-3000:]
        assert {r.message for r in refused} == {
            f'pods "{pod.name}" is forbidden: User "{API_SERVER}" cannot get resource "pods/log" in API group "" '
            'in the namespace "ml"'
        }, refused
        again = task_log(admin, "smoke_live_log", run_id, "hold")
        assert "smoke-live-log: running" in again, again[-3000:]
    finally:
        admin._call("POST", "/variables", json={"key": release, "value": "go"})
    run = admin.wait_for_run("smoke_live_log", run_id, RUN_BOUND)
    assert run["state"] == "success", admin.task_instances("smoke_live_log", run_id)
    prove(
        f"pod {pod.name} running: the REST API served its live log through the Kubernetes API as {API_SERVER}; "
        "pod-log rule removed → 403, log unreadable; restored → readable"
    )


# ---- mutations of the pod launcher's rights ----------------------------------------------------------------------
def _read_only_pods(role: dict[str, Any]) -> None:
    for rule in role["rules"]:
        if rule["resources"] == ["pods"]:
            rule["verbs"] = ["get", "list", "watch"]


def _without_worker(binding: dict[str, Any]) -> None:
    binding["subjects"] = [s for s in binding["subjects"] if s["name"] != f"{RELEASE}-worker"]


MUTATIONS = {  # the edit, the tasks that fail, the requests refused (user, verb): the first each client makes
    "pod-launcher Role: pods verbs cut to get/list/watch": (
        "Role",
        _read_only_pods,
        {"step", "on_kubernetes"},
        {(WORKER, "create"), (SCHEDULER, "create")},
    ),
    "pod-launcher RoleBinding: worker subject removed": ("RoleBinding", _without_worker, {"step"}, {(WORKER, "list")}),
}


@pytest.mark.integration  # the installed chart
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_cut_pod_launcher_right_fails_pod_creation_with_403(
    installed: Installed, admin: AirflowApi, mutation: str, prove
) -> None:
    kind, edit, failing, expected = MUTATIONS[mutation]
    with installed.api.expect_refusals() as refused, applied(installed, kind, f"{RELEASE}-pod-launcher", edit):
        run_id, states = run_dag(admin, "smoke_rbac")
    assert states == {t: "failed" if t in failing else "success" for t in ("step", "on_kubernetes")}, states
    assert {(r.user, r.verb) for r in refused} == expected, refused
    # The step's own log names the refusal (what the kubernetes launcher's failure carries).
    step_log = task_log(admin, "smoke_rbac", run_id, "step")
    verb = next(v for u, v in expected if u == WORKER)
    said = re.search(rf'is forbidden: User \\*"{WORKER}\\*" cannot {verb} resource \\*"pods\\*"', step_log)
    assert said, step_log[-3000:]
    if "on_kubernetes" in failing:
        # The KubernetesExecutor failed the task before it ran: the scheduler's audit entry carries the 403.
        mismatch = state_mismatch(admin, "smoke_rbac", run_id, "on_kubernetes")
        assert "Forbidden" in mismatch and SCHEDULER in mismatch, mismatch
    run_id, states = run_dag(admin, "smoke_rbac")  # restored: the same DAG runs through
    assert states == {"step": "success", "on_kubernetes": "success"}, states
    who = ", ".join(f"{user.rsplit(':', 1)[-1]} {verb}" for user, verb in sorted(expected))
    prove(f"{mutation}: {', '.join(sorted(failing))} failed, 403 on {who}; restored: both succeed")


# ---- identities (every pod of the session) -----------------------------------------------------------------------
@pytest.mark.integration  # the installed chart
def test_each_pod_gets_its_own_service_accounts_token_only_where_automounted(installed: Installed, prove) -> None:
    seen: dict[str, str] = {}
    for pod in list(installed.kubelet.pods.values()):
        if not pod.containers or pod.containers[0].in_engine is not None:
            continue  # a step pod runs in its image through the engine: its account mounts no token (below)
        account = pod.spec.get("serviceAccountName", "default")
        sa = installed.api.service_account(NAMESPACE, account)
        assert sa is not None, f"{pod.workload} runs on {account}, which the install does not hold"
        automount = pod.spec.get("automountServiceAccountToken", sa.get("automountServiceAccountToken", True))
        token = token_of(pod)
        if not automount:
            assert token is None, f"{pod.workload}: {account} does not automount, yet a token is mounted"
            seen[account] = "no token"
            continue
        assert token is not None, f"{pod.workload}: {account} automounts, yet no token is mounted"
        identity = installed.api.authenticate(f"Bearer {token}")
        assert identity is not None and identity.user == f"system:serviceaccount:{NAMESPACE}:{account}", identity
        seen[account] = "own token"
    assert seen[f"{RELEASE}-kubernetes-task"] == "no token"  # KubernetesExecutor task pods ran in test_render_runs
    for account in ("scheduler", "worker", "triggerer", "api-server"):
        assert seen[f"{RELEASE}-{account}"] == "own token", seen
    for account in ("dag-processor", "migrate"):
        assert seen[f"{RELEASE}-{account}"] == "no token", seen
    step = installed.api.service_account(NAMESPACE, f"{RELEASE}-step")
    assert step is not None and step["automountServiceAccountToken"] is False
    prove(", ".join(f"{a.removeprefix(RELEASE + '-')}: {t}" for a, t in sorted(seen.items())))


# ---- the audit ---------------------------------------------------------------------------------------------------
@pytest.mark.integration  # the installed chart
def test_the_install_made_no_request_the_api_refused(installed: Installed, prove) -> None:
    """A legitimate install is 403-free: every request of every pod this session (outside the mutations above)
    was authorized. Runs last: this module's name sorts after every other test module of the directory."""
    refused: list[Refusal] = list(installed.api.refused)
    assert refused == [], "\n".join(f"{r.code} {r.user} {r.path}: {r.message}" for r in refused[:20])
    by_user = installed.api.authorized
    users = {
        u.rsplit(":", 1)[-1].removeprefix(RELEASE + "-"): n
        for u, n in by_user.items()
        if u.startswith("system:serviceaccount:")
    }
    assert users.get("scheduler") and users.get("worker") and users.get("api-server"), by_user
    prove(
        f"0 refused; {sum(users.values())} pod requests authorized: "
        + ", ".join(f"{u} {n}" for u, n in sorted(users.items()))
    )
