"""The Kubernetes launcher end to end through real Airflow runs, against a mock of the Kubernetes API.

No Kubernetes API can run here, so tests/support/kube_api.py mocks it (said so here, as the standards ask): the
same fake API server the chart runtime uses, authorizing each request by RBAC (here: the worker's ServiceAccount and
the pod launcher's Role). Its kubelet is scripted (tests/launchers/scripted_kubelet.py): each test names the pods'
status, and for the success case it writes the step's outputs. The kind suite runs the same path against a real
cluster.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import DAG
from sluice.contract import step_env
from sluice.launchers.base import FailureKind, LaunchResult, StepRun
from sluice.launchers.kubernetes import KubernetesLauncher
from sluice.launchers.kubernetes import labels as launcher_labels
from sluice.operators import MLStepOperator
from sluice.platform import current_platform

from tests.launchers.scripted_kubelet import NAMESPACE, POD_VERBS, WORKER, ScriptedKubelet, worker_rbac
from tests.support.kube_api import KubeApi, Manifests
from tests.support.runs import run_dag_object

_ids = itertools.count()
LOG = logging.getLogger("test.kubernetes_launcher")


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory):
    """One mock API server per module, named through Airflow's ``kubernetes_default`` connection (the
    kubernetes client reads ``KUBECONFIG`` once, at import, so the env var cannot point at a new server); the
    worker talks to it with its own ServiceAccount's token, as the chart mounts it."""
    kubelet = ScriptedKubelet()
    rbac = worker_rbac()
    server = KubeApi(kubelet.on_create, kubelet.on_delete, kubelet.logs, objects=Manifests(rbac), namespace=NAMESPACE)
    kubelet.attach(server)
    token = server.token_for(NAMESPACE, WORKER)
    kubeconfig = server.kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig", NAMESPACE, token)
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig), "namespace": "ml"}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(connection))
        yield kubelet
    server.shutdown()
    assert server.errors == [], server.errors[0]


@pytest.fixture
def cluster(stub: ScriptedKubelet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: Path, request):
    """The mock API, emptied, with the scenario the test names; ``forbidden``: the pod launcher's Role lets the
    worker do everything with pods but create them (RBAC refuses it, as a cluster does)."""
    api = stub.api
    api.clear()
    stub.scenario = request.param
    stub.left_running.clear()
    role = next(doc for doc in api.objects.of_kind("Role") if doc["metadata"]["name"] == "sluice-pod-launcher")
    verbs = [v for v in POD_VERBS if v != "create"] if request.param == "forbidden" else list(POD_VERBS)
    role["rules"][0]["verbs"] = verbs
    platform = tmp_path / "platform.yaml"
    platform.write_text(
        json.dumps(
            {
                "pools": [{"name": "default", "queues": ["default"]}, {"name": "highmem", "queues": ["highmem"]}],
                "profiles": {"default": {"cpu": "1", "memory": "1Gi"}, "highmem": {"memory": "2Gi"}},
                "launcher": {
                    "type": "kubernetes",
                    "namespace": "ml",
                    "startupTimeoutSeconds": 2,
                    "onFinishAction": "delete_succeeded_pod",
                    "deferrable": getattr(request, "node", None) is not None
                    and request.node.get_closest_marker("deferrable") is not None,
                },
                "artifacts": {"root": str(tmp_path / "artifacts"), "cache": {"enabled": False}},
                "stepImages": {"ml-steps": {"repository": "reg/ml-steps", "tag": "9.9"}},
            }
        )
    )
    monkeypatch.setenv("SLUICE_PLATFORM_FILE", str(platform))
    monkeypatch.delenv("SLUICE_LAUNCHER", raising=False)
    monkeypatch.delenv("SLUICE_ARTIFACT_ROOT", raising=False)
    (tmp_path / "train.parquet").write_bytes(b"the training rows (the stub pod never reads them)")
    return stub


def train_step(**kwargs: object) -> MLStepOperator:
    """The train step with what its spec requires (checked when it is built): its input and two params."""
    train_set = Path(os.environ["SLUICE_PLATFORM_FILE"]).with_name("train.parquet")  # the cluster fixture's
    return MLStepOperator(
        task_id="train",
        image="ml-steps",
        command=["sluice-step", "train"],
        inputs={"train": str(train_set)},
        step_params={"target": "target", "algorithm": "knn"},
        outputs={"model": "model.joblib"},
        **kwargs,
    )


def one_step_dag() -> DAG:
    with DAG(f"k8s_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        train_step(retries=0)
    return dag


@pytest.mark.parametrize("cluster", ["succeeded"], indirect=True)
def test_step_runs_as_a_pod_and_its_result_comes_back_through_the_store(cluster: ScriptedKubelet) -> None:
    outcome = run_dag_object(one_step_dag())
    assert outcome.task("train").state == "success"
    assert outcome.task("train").metrics == {"ran_in": "pod"}
    pod = cluster.api.created[0]
    assert pod["spec"]["containers"][0]["image"] == "reg/ml-steps:9.9"
    assert pod["spec"]["containers"][0]["command"] == ["sluice-step"] and pod["spec"]["containers"][0]["args"] == [
        "train"
    ]
    assert pod["metadata"]["labels"]["task_id"] == "train" and pod["metadata"]["labels"]["try_number"] == "1"
    assert pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sluice"
    assert any(path.endswith(pod["metadata"]["name"]) for path in cluster.api.calls("DELETE")), "succeeded pod deleted"


def with_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **step_image: str) -> None:
    """The cluster's platform with the step cache on (the fixture's has it off) and ``step_image`` changes."""
    platform = json.loads(Path(os.environ["SLUICE_PLATFORM_FILE"]).read_text())
    platform["artifacts"]["cache"] = {"enabled": True}
    platform["stepImages"]["ml-steps"].update(step_image)
    cached = tmp_path / "platform-cached.yaml"
    cached.write_text(json.dumps(platform))
    monkeypatch.setenv("SLUICE_PLATFORM_FILE", str(cached))


@pytest.mark.parametrize("cluster", ["succeeded"], indirect=True)
def test_a_step_on_a_mutable_tag_is_not_cached_and_its_log_says_why(
    cluster: ScriptedKubelet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with_cache(tmp_path, monkeypatch)
    dag = one_step_dag()
    first = run_dag_object(dag)
    again = run_dag_object(dag)
    assert [first.task("train").cache_state, again.task("train").cache_state] == ["off", "off"]
    assert len(cluster.api.created) == 2, "each run ran its pod"
    assert "cache off: image reg/ml-steps:9.9 is a mutable tag; pin a digest or set cache_version" in "".join(
        capfd.readouterr()
    )


@pytest.mark.parametrize("cluster", ["succeeded"], indirect=True)
def test_a_step_on_a_digest_pinned_image_is_served_from_the_cache_without_a_pod(
    cluster: ScriptedKubelet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "sha256:" + "9e" * 32
    with_cache(tmp_path, monkeypatch, digest=digest)
    dag = one_step_dag()
    first = run_dag_object(dag)
    again = run_dag_object(dag)
    assert [first.task("train").cache_state, again.task("train").cache_state] == ["miss", "hit"]
    assert [pod["spec"]["containers"][0]["image"] for pod in cluster.api.created] == [f"reg/ml-steps:9.9@{digest}"]


def launch(step_id: str = "train", try_number: int = 1) -> tuple[KubernetesLauncher, StepRun, dict]:
    """A launcher, its step and a task context, built outside a DAG run so failures can be asserted on."""
    platform = current_platform()
    step = StepRun(
        dag_id="k8s_direct",
        task_id=step_id,
        run_id="manual__1",
        try_number=try_number,
        map_index=-1,
        image=platform.image_ref("ml-steps"),
        command=["sluice-step", "train"],
        env=step_env({}, {"model": "/tmp/none"}, {}, "/tmp/prefix"),
        profile_name="default",
        profile=platform.profile("default"),
        artifact_prefix="/tmp/prefix",
    )
    ti = SimpleNamespace(
        dag_id=step.dag_id,
        task_id=step.task_id,
        run_id=step.run_id,
        try_number=try_number,
        map_index=-1,
        xcom_push=lambda **_: None,
    )
    context = {"ti": ti, "task_instance": ti, "run_id": step.run_id, "dag": SimpleNamespace(dag_id=step.dag_id)}
    return KubernetesLauncher(platform), step, context


@pytest.mark.slow  # waits out the provider's start-up timeout
@pytest.mark.parametrize("cluster", ["unschedulable"], indirect=True)
def test_pod_stuck_pending_fails_with_the_scheduler_reason(cluster: ScriptedKubelet) -> None:
    launcher, step, context = launch()
    result = launcher.run(step, LOG, context)
    assert result.failure is FailureKind.START
    assert "step pod for train did not start" in result.message
    assert "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in result.message


@pytest.mark.parametrize("cluster", ["image-pull"], indirect=True)
def test_image_pull_backoff_fails_fast_naming_the_image(cluster: ScriptedKubelet) -> None:
    launcher, step, context = launch()
    result = launcher.run(step, LOG, context)
    assert result.failure is FailureKind.IMAGE_MISSING and result.failure.permanent
    assert "ImagePullBackOff" in result.message and "reg/ml-steps:9.9" in result.message


@pytest.mark.parametrize("cluster", ["forbidden"], indirect=True)
def test_a_pod_the_api_refuses_fails_with_the_apis_own_reason(cluster: ScriptedKubelet) -> None:
    """The client's exception says only "(403)": the task's error carries the Status message (who may not do what)."""
    launcher, step, context = launch()
    result = launcher.run(step, LOG, context)
    assert result.failure is FailureKind.START and not result.failure.permanent  # fixing the Role fixes a retry
    assert result.message == (
        "step pod for train not run: the Kubernetes API answered 403 Forbidden: pods is forbidden: User "
        '"system:serviceaccount:ml:sluice-worker" cannot create resource "pods" in API group "" in the namespace "ml"'
    )


@pytest.mark.parametrize("cluster", ["failed"], indirect=True)
def test_failed_pod_is_kept_for_debugging_under_delete_succeeded_pod(cluster: ScriptedKubelet) -> None:
    launcher, step, context = launch()
    result = launcher.run(step, LOG, context)
    assert result.failure is FailureKind.EXIT and "step pod for train failed" in result.message
    name = cluster.api.created[0]["metadata"]["name"]
    assert not [p for p in cluster.api.calls("DELETE") if p.endswith(name)]
    assert cluster.api.pods[name]["metadata"]["labels"]["already_checked"] == "True"


@pytest.mark.parametrize("cluster", ["succeeded"], indirect=True)
def test_a_retry_reattaches_to_the_pod_a_lost_worker_left_instead_of_creating_another(cluster: ScriptedKubelet) -> None:
    launcher, step, context = launch(try_number=2)
    orphan_labels = {
        **launcher_labels(step),
        "dag_id": step.dag_id,
        "task_id": step.task_id,
        "run_id": step.run_id,
        "try_number": "1",
        "kubernetes_pod_operator": "True",
    }
    cluster.left_running.add("left-by-try-1")  # running until its log is read, then the scenario's end
    pod = {"metadata": {"name": "left-by-try-1", "labels": orphan_labels}, "spec": {"containers": [{"name": "base"}]}}
    cluster.api.create("ml", pod)
    cluster.api.created.clear()
    launcher.run(step, LOG, context)
    assert cluster.api.created == [], "no second pod"
    assert "/api/v1/namespaces/ml/pods/left-by-try-1" in cluster.api.calls("DELETE")


@pytest.mark.parametrize("cluster", ["running"], indirect=True)
def test_killing_the_task_deletes_its_pod(cluster: ScriptedKubelet) -> None:
    launcher, step, context = launch()
    results: list[LaunchResult] = []

    def run() -> None:
        results.append(launcher.run(step, LOG, context))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while not cluster.api.created and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.api.created, "the pod was never created"
    launcher.on_kill()
    worker.join(timeout=60)
    name = cluster.api.created[0]["metadata"]["name"]
    assert f"/api/v1/namespaces/ml/pods/{name}" in cluster.api.calls("DELETE")
    assert results and results[0].failure is FailureKind.KILLED
    assert "was deleted because the task was killed" in results[0].message


@pytest.mark.deferrable
@pytest.mark.parametrize("cluster", ["running"], indirect=True)
def test_deferrable_launch_hands_the_pod_to_the_triggerer(cluster: ScriptedKubelet) -> None:
    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
    from airflow.sdk.exceptions import TaskDeferred

    launcher, step, context = launch()
    with pytest.raises(TaskDeferred) as deferred:
        launcher.run(step, LOG, context)
    assert deferred.value.method_name == "trigger_reentry"
    assert isinstance(deferred.value.trigger, KubernetesPodTrigger)
    assert deferred.value.trigger.pod_name == cluster.api.created[0]["metadata"]["name"]


@pytest.mark.deferrable
@pytest.mark.parametrize("cluster", ["succeeded"], indirect=True)
def test_resumed_step_reads_its_result_and_publishes_outputs(cluster: ScriptedKubelet, tmp_path: Path) -> None:
    """What the task runner does after the trigger fires: call the task's trigger_reentry with the event."""
    from airflow.sdk.exceptions import TaskDeferred

    with DAG(f"k8s_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1)):
        task = train_step()
    pushed: dict[str, str] = {}
    ti = SimpleNamespace(
        dag_id=task.dag_id,
        task_id="train",
        run_id="manual__2",
        try_number=1,
        map_index=-1,
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
    )
    context = {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "dag": task.dag}
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context)
    pod = deferred.value.trigger.pod_name
    result = task.trigger_reentry(context, {"status": "success", "name": pod, "namespace": "ml", "message": ""})
    assert result["metrics"] == {"ran_in": "pod"}
    assert pushed["model"].endswith("/train/model.joblib")
    assert f"/api/v1/namespaces/ml/pods/{pod}" in cluster.api.calls("DELETE")


@pytest.mark.parametrize("cluster", ["succeeded"], indirect=True)
def test_a_worker_without_api_credentials_fails_before_any_pod_saying_so(
    cluster: ScriptedKubelet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker whose ServiceAccount mounts no token has no credentials: no request is made, and the task says why."""
    missing = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(tmp_path / "no-token"), "namespace": "ml"}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(missing))
    launcher, step, context = launch()
    result = launcher.run(step, LOG, context)
    assert result.failure is FailureKind.START and cluster.api.created == []
    assert result.message.startswith("step pod for train not run: no Kubernetes API credentials (")
    assert result.message.endswith("); does the ServiceAccount mount its token?")
