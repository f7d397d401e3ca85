"""Install the chart on this machine: render it with ``helm template`` and run the render's workloads.

Only the kubelet is replaced (``tests.chart_runtime.kubelet``), and the Kubernetes API the KubernetesExecutor
and the kubernetes launcher talk to is a stand-in (``tests.chart_runtime.kube_api``: none can run here) whose
pods the same kubelet runs. The object store is moto's S3 server (no MinIO here). Everything else is what the
chart renders, run as is, against real PostgreSQL and Redis.

Platform pods (the Airflow components, KubernetesExecutor task pods) run as processes. Step pods (the step
image's, created by the kubernetes launcher) run in the built step image through the container engine, with
their securityContext and limits, wherever ``make images`` built it; elsewhere as processes, and the install
says why (the tests that need containers then skip, or fail under SLUICE_REQUIRE_CONTAINERS=1).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sluice.launchers.engine import Engine, EngineMissing, find_engine
from sluice.platform import Platform, parse_platform

from tests.chart.render import render_chart
from tests.chart_runtime.kube_api import KubeApi
from tests.chart_runtime.kubelet import Image, Kubelet, Objects, Pod, official_airflow_entrypoint
from tests.support.postgres import fresh_database

HERE = Path(__file__).parent
REPO = HERE.parents[1]
NAMESPACE = "ml"
RELEASE = "sluice"
BUCKET = "sluice-smoke"
START_BOUND = 420.0  # seconds for the whole install to converge on a loaded 2-core machine
PLATFORM_REPO = "ghcr.io/sluice-ml/airflow"
STEPS_REPO = "ghcr.io/sluice-ml/ml-steps"
# Where the kubelet puts the API stand-in's address in every container (a cluster mounts in-cluster credentials).
KUBECONFIG = "/var/run/secrets/sluice-harness/kubeconfig"


@dataclass
class Installed:
    docs: list[dict[str, Any]]
    objects: Objects
    kubelet: Kubelet
    api: KubeApi
    db_url: str
    s3_endpoint: str
    values: dict[str, Any]
    converged_seconds: float
    pods: list[Pod] = field(default_factory=list)
    step_engine: Engine | None = None  # what runs step pods in the step image; None: processes
    steps_in: str = ""  # where step pods run, in words (and why not in containers)

    def rendered(self, kind: str, name: str) -> dict[str, Any]:
        found = self.objects.find(kind, name)
        assert found is not None, f"the render has no {kind} {name}"
        return found

    def named(self, kind: str, prefix: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)]
        assert len(found) == 1, f"{kind} {prefix}*: {[d['metadata']['name'] for d in found]}"
        return found[0]

    def secret(self, name: str, key: str) -> str:
        data = self.objects.data("Secret", name)
        assert data is not None and key in data, f"Secret {name} has no key {key}"
        return data[key]

    @property
    def platform(self) -> Platform:
        """The platform config the render gives every component (its platform.yaml ConfigMap)."""
        return platform_of(self.docs)

    @property
    def api_url(self) -> str:
        target = self.kubelet.network.service_target(f"{RELEASE}-api-server", 8080)
        assert target, "no pod behind the api-server Service"
        return f"http://{target}"


def images(tmp: Path) -> dict[str, Image]:
    """The two images the chart names, modelled on this virtualenv (see ``kubelet.Image``)."""
    from sluice.runs import write_demo_data

    dags = tmp / "image-dags"  # images/airflow/Dockerfile bakes dags/; the probe DAG is a thin layer on top
    dags.mkdir()
    for source in [*sorted((REPO / "dags").glob("*.py")), *sorted((HERE / "dags").glob("*.py"))]:
        shutil.copy(source, dags / source.name)
    demo = tmp / "image-demo-data"  # images/ml-steps/Dockerfile bakes the demo sources here
    write_demo_data(demo)
    # The virtualenv is where this machine has the images' software: a host path, never mapped into a pod.
    host = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}
    platform_env = {
        "AIRFLOW_HOME": "/opt/airflow",
        "AIRFLOW_USER_HOME_DIR": "/home/airflow",
        "HOME": "/home/airflow",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    steps_env = {"HOME": "/home/sluice", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    platform_dags = {"/opt/airflow/dags": dags}
    return {
        PLATFORM_REPO: Image(platform_env, official_airflow_entrypoint, platform_dags, "/opt/airflow", host),
        STEPS_REPO: Image(
            steps_env, lambda args: ["sluice-step", *args], {"/opt/sluice/demo-data": demo}, "/opt/sluice-steps", host
        ),
    }


def platform_of(docs: list[dict[str, Any]]) -> Platform:
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-platform"]
    assert len(found) == 1, f"the render has {len(found)} ConfigMaps {RELEASE}-platform"
    return parse_platform(yaml.safe_load(found[0]["data"]["platform.yaml"]), Path("platform.yaml"))


def step_engine(step_image: str) -> tuple[Engine | None, str]:
    """The engine that runs step pods in ``step_image`` where it is built here (else None), and where they run."""
    try:
        engine = find_engine()
    except EngineMissing as exc:
        return None, f"as processes: {exc}"
    if not engine.image_exists(step_image):
        return None, f"as processes: image {step_image} is not built here (make images)"
    return engine, f"in {step_image} ({engine.image_id(step_image)}) through {engine.name}"


def user_secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret the user creates before installing (``kubectl create secret generic``)."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE}, "data": encoded}


def pod_status(pod: Pod) -> dict[str, Any]:
    """A pod's status as the API server reports it, from the kubelet's processes."""
    statuses = []
    for run in pod.containers:
        if run.exit_code is not None:
            reason = run.reason or ("Completed" if run.exit_code == 0 else "Error")
            state: dict[str, Any] = {"terminated": {"exitCode": run.exit_code, "reason": reason}}
        elif run.proc is not None:
            state = {"running": {"startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        else:
            state = {"waiting": {"reason": pod.reason.split(":")[0] or "PodInitializing", "message": pod.reason}}
        statuses.append(
            {
                "name": run.name,
                "image": run.spec["image"],
                "imageID": "",
                "ready": "running" in state,
                "restartCount": 0,
                "started": "running" in state,
                "state": state,
            }
        )
    ready = "True" if pod.phase == "Running" else "False"
    return {
        "phase": pod.phase,
        "podIP": pod.ip,
        "message": pod.reason,
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready}],
        "containerStatuses": statuses,
    }


@contextlib.contextmanager
def install(pg_server: dict[str, object], redis_url: str, s3_endpoint: str, tmp: Path) -> Iterator[Installed]:
    """Render the chart for this machine's services and apply it: every Job and Deployment at once."""
    image_models = images(tmp)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="smoke",
        aws_secret_access_key="smoke",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    with fresh_database(pg_server, "sluice_chart") as db_url:
        user_objects = [
            user_secret(
                "smoke-artifacts",
                {
                    "AWS_ACCESS_KEY_ID": "smoke",
                    "AWS_SECRET_ACCESS_KEY": "smoke",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": s3_endpoint,
                },
            )
        ]
        objects = Objects(user_objects)
        api_access = tmp / "kubeconfig"
        kubelet = Kubelet(objects, image_models, NAMESPACE, tmp, provided={KUBECONFIG: api_access})
        api = KubeApi(on_create=kubelet.run_api_pod, on_delete=kubelet.stop, logs=kubelet.logs)
        kubelet.on_status = lambda pod: (
            api.set_status(pod.name, pod_status(pod)) if pod.workload.startswith("Pod/") else None
        )
        api.kubeconfig(api_access, NAMESPACE)
        connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": KUBECONFIG, "namespace": NAMESPACE}}
        values = {
            # External services, as a production install names them (deploy/values-prod.yaml does the same
            # through Secrets): the machine's PostgreSQL and a throwaway Redis.
            "postgresql": {"enabled": False},
            "redis": {"enabled": False},
            "data": {
                "metadataConnection": db_url,
                "brokerUrl": redis_url,
            },
            "artifacts": {"root": f"s3://{BUCKET}", "secretName": "smoke-artifacts"},
            "metrics": {"enabled": False},  # the statsd exporter is not the platform image
            # Where the Kubernetes API is: in a cluster the kubelet gives pods in-cluster credentials; here it
            # provides the stand-in's kubeconfig, named to the executor and the launcher through the chart's `env`.
            "env": [
                {"name": "AIRFLOW__KUBERNETES_EXECUTOR__IN_CLUSTER", "value": "False"},
                {"name": "AIRFLOW__KUBERNETES_EXECUTOR__CONFIG_FILE", "value": KUBECONFIG},
                {"name": "AIRFLOW_CONN_KUBERNETES_DEFAULT", "value": json.dumps(connection)},
            ],
        }
        docs = render_chart(values, name=RELEASE, namespace=NAMESPACE)
        objects.docs.extend(docs)
        engine, steps_in = step_engine(platform_of(docs).image_ref("ml-steps"))
        image_models[STEPS_REPO].engine = engine
        print(f"\nchart runtime: step pods run {steps_in}")
        started = time.monotonic()
        pods = kubelet.apply(docs)
        try:
            _wait_converged(kubelet, pods, started)
            converged = time.monotonic() - started
            print(f"\nchart runtime: every Job complete and every pod ready in {converged:.0f} s")
            yield Installed(docs, objects, kubelet, api, db_url, s3_endpoint, values, converged, pods, engine, steps_in)
        finally:
            kubelet.stop_all(grace=30)
            api.shutdown()


def _wait_converged(kubelet: Kubelet, pods: list[Pod], started: float) -> None:
    """What ``helm install --wait`` waits for: Jobs complete, every Deployment's pod ready (its probes pass)."""
    pending = {p.name for p in pods}
    while pending:
        for pod in pods:
            if pod.name not in pending:
                continue
            if pod.phase == "Failed":
                raise AssertionError(f"the install did not converge:\n{pod.describe()}")
            if pod.workload.startswith("Job/"):
                if pod.phase == "Succeeded":
                    pending.discard(pod.name)
            elif pod.phase == "Running" and _ready(kubelet, pod):
                pending.discard(pod.name)
        if time.monotonic() - started > START_BOUND:
            still = [kubelet.pods[n] for n in pending]
            details = "\n".join(p.describe() for p in still)
            raise AssertionError(f"not converged after {START_BOUND:.0f} s:\n{details}")
        time.sleep(2)


def _ready(kubelet: Kubelet, pod: Pod) -> bool:
    """Ready as the kubelet judges it: the readiness (or startup) probe passes; no probe = running."""
    for run in pod.containers:
        for kind in ("readinessProbe", "startupProbe"):
            if kind in run.spec:
                ok, _ = kubelet.probe(pod, run.name, kind)
                if not ok:
                    return False
    return True
