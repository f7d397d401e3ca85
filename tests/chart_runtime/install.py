"""Install the chart on this machine: render it with ``helm template`` and run the render's workloads.

Only the kubelet is replaced (``tests.chart_runtime.kubelet``), and the Kubernetes API the KubernetesExecutor
and the kubernetes launcher talk to is a mock of it (``tests.support.kube_api``: none can run here) whose
pods the same kubelet runs. The object store is moto's S3 server (no MinIO here). Everything else is what the
chart renders with its default values, run as is: the bundled PostgreSQL, Redis and statsd exporter too, each in
a model of its image on this machine's binaries of the same program (``tests.chart_runtime.services``; the
install prints the versions). The external-services path (deploy/values-prod.yaml) is proven without a second
install: test_external_services.py runs its migration Job against this machine's PostgreSQL.

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
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sluice.launchers.engine import Engine, EngineMissing, find_engine
from sluice.platform import Platform, parse_platform

from tests.chart.render import render_chart
from tests.chart_runtime.kubelet import (
    ContainerRun,
    Image,
    Kubelet,
    Objects,
    Pod,
    PodError,
    container_ready,
    official_airflow_entrypoint,
    pod_ready,
    terminated,
)
from tests.chart_runtime.services import ServiceImages, service_images
from tests.support.kube_api import KubeApi, ServiceAccountMissing

HERE = Path(__file__).parent
REPO = HERE.parents[1]
NAMESPACE = "ml"
RELEASE = "sluice"
BUCKET = "sluice-smoke"
START_BOUND = 420.0  # seconds for the whole install to converge on a loaded 2-core machine
PLATFORM_REPO = "ghcr.io/sluice-ml/airflow"
STEPS_REPO = "ghcr.io/sluice-ml/ml-steps"
# Where the kubelet puts a pod's ServiceAccount token (a kubeconfig for the API stand-in) when it is automounted:
# a cluster mounts in-cluster credentials instead.
KUBECONFIG = "/var/run/secrets/sluice-harness/kubeconfig"


@dataclass
class Installed:
    docs: list[dict[str, Any]]
    objects: Objects
    kubelet: Kubelet
    api: KubeApi
    db_url: str  # the bundled PostgreSQL's database, as the metadata Secret names it, routed to its pod from here
    broker_url: str  # the bundled Redis, as the broker Secret names it, routed likewise
    s3_endpoint: str
    values: dict[str, Any]
    converged_seconds: float
    pods: list[Pod] = field(default_factory=list)
    step_engine: Engine | None = None  # what runs step pods in the step image; None: processes
    steps_in: str = ""  # where step pods run, in words (and why not in containers)
    services: ServiceImages = field(default_factory=ServiceImages)  # the bundled services' models and versions
    not_run: dict[str, str] = field(default_factory=dict)  # workload → why the harness could not run it here

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


def images(tmp: Path, services: ServiceImages | None = None) -> dict[str, Image]:
    """The images the chart names, modelled: the platform and step images on this virtualenv (see ``kubelet.Image``),
    the bundled services' on this machine's binaries where it has them (``services.service_images``)."""
    from sluice import demo as examples

    dags = tmp / "image-dags"  # images/airflow/Dockerfile bakes dags/; the probe DAG is a thin layer on top
    dags.mkdir()
    for source in [*sorted((REPO / "dags").glob("*.py")), *sorted((HERE / "dags").glob("*.py"))]:
        shutil.copy(source, dags / source.name)
    demo = tmp / "image-demo-data"  # images/ml-steps/Dockerfile bakes the demo sources here
    examples.prepare("ml_training_pipeline", examples.declared(REPO / "dags" / "ml_training_pipeline.py"), demo)
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
        **(services if services is not None else service_images(tmp)).images,
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
    """A pod's status as the API server reports it, from the kubelet's processes, restarts and probes."""

    def status(run: ContainerRun) -> dict[str, Any]:
        state: dict[str, Any]
        if run.waiting:
            message = f"back-off {run.backoff:g}s restarting failed container={run.name} pod={pod.name}"
            state = {"waiting": {"reason": run.waiting, "message": message}}
        elif run.exit_code is not None:
            state = {"terminated": terminated(run)}
        elif run.proc is not None:
            state = {"running": {"startedAt": run.started_at}}
        else:
            state = {"waiting": {"reason": pod.reason.split(":")[0] or "PodInitializing", "message": pod.reason}}
        out = {
            "name": run.name,
            "image": run.spec["image"],
            "imageID": "",
            "ready": container_ready(run),
            "restartCount": run.restarts,
            "started": "running" in state and run.started.is_set(),
            "state": state,
        }
        return out | ({"lastState": {"terminated": run.last}} if run.last else {})

    def condition(kind: str, true: bool) -> dict[str, str]:
        return {"type": kind, "status": "True" if true else "False"}

    ready = pod_ready(pod)
    initialized = all(r.exit_code == 0 for r in pod.init)
    return {
        "phase": pod.phase,
        "podIP": pod.ip,
        "message": pod.reason,
        "conditions": [
            condition("PodScheduled", True),
            condition("Initialized", initialized),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "initContainerStatuses": [status(run) for run in pod.init],
        "containerStatuses": [status(run) for run in pod.containers],
    }


@contextlib.contextmanager
def install(s3_endpoint: str, tmp: Path) -> Iterator[Installed]:
    """Render the chart with its default values (bundled PostgreSQL, Redis, statsd exporter) for this machine and
    apply it: every Job, Deployment and StatefulSet at once."""
    services = service_images(tmp)
    image_models = images(tmp, services)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="smoke",
        aws_secret_access_key="smoke",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
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
    # A Unix socket's path may not exceed 107 bytes (the bundled PostgreSQL's is under its pod's root): the kubelet
    # works under a short link to ``tmp``, made when the pods start.
    workdir = Path(tempfile.gettempdir()) / f"sluice-{uuid.uuid4().hex[:8]}"
    for stale in workdir.parent.glob("sluice-????????"):  # links of killed runs, whose pytest directory is gone
        if stale.is_symlink() and not stale.exists():
            stale.unlink(missing_ok=True)
    kubelet = Kubelet(objects, image_models, NAMESPACE, workdir)
    api = KubeApi(
        on_create=kubelet.run_api_pod,
        on_delete=kubelet.stop,
        logs=kubelet.logs,
        objects=objects,
        namespace=NAMESPACE,
    )

    # Each pod gets its own ServiceAccount's token (none where it is not automounted), authorized by the
    # install's RBAC: the stand-in's kubeconfig at KUBECONFIG is the harness's in-cluster credentials.
    def credentials(pod: Pod) -> dict[str, Path]:
        try:
            return api.credentials(NAMESPACE, pod.spec, pod.root, KUBECONFIG)
        except ServiceAccountMissing as exc:
            raise PodError(str(exc)) from None

    kubelet.credentials = credentials
    kubelet.on_status = lambda pod: (
        api.set_status(pod.name, pod_status(pod)) if pod.workload.startswith("Pod/") else None
    )
    connection = {"conn_type": "kubernetes", "extra": {"kube_config_path": KUBECONFIG, "namespace": NAMESPACE}}
    values = {
        # The chart's defaults but for what this machine has no cluster for: postgresql, redis and metrics stay
        # enabled (the bundled services, the default-values path); moto's S3 is the artifact store.
        "artifacts": {"root": f"s3://{BUCKET}", "secretName": "smoke-artifacts"},
        # Airflow's HA scheduler: two replicas at once (row locks in PostgreSQL), each with its share of the
        # derived [core] parallelism (test_two_schedulers_...).
        "scheduler": {"replicas": 2},
        # Where the Kubernetes API is: in a cluster the kubelet gives pods in-cluster credentials; here it
        # mounts a kubeconfig with the pod's own ServiceAccount token (only where that token is automounted),
        # named to the executor and the launcher through the chart's `env`.
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
    scale = kubelet.probe_timeout_scale
    print(f"chart runtime: probe timeouts x{scale:g} (SLUICE_PROBE_TIMEOUT_SCALE; 1: as rendered; see kubelet.py)")
    for repository, version in services.versions.items():
        print(f"chart runtime: {repository} modelled on this machine's binaries: {version}")
    not_run = _not_run(docs, services)
    for workload, why in not_run.items():
        print(f"chart runtime: NOT RUN {workload}: {why}")
    # What the components' env names (the chart's Secrets), routed from here as the kubelet routes it for them.
    db_url = kubelet.network.rewrite_services(_key(objects, f"{RELEASE}-metadata", "connection"))
    broker_url = kubelet.network.rewrite_services(_key(objects, f"{RELEASE}-broker", "connection"))
    started = time.monotonic()
    workdir.symlink_to(tmp, target_is_directory=True)
    pods = kubelet.apply([d for d in docs if f"{d['kind']}/{d['metadata']['name']}" not in not_run])
    try:
        _wait_converged(kubelet, started)
        converged = time.monotonic() - started
        print(f"\nchart runtime: every Job complete and every pod ready in {converged:.0f} s")
        yield Installed(
            docs,
            objects,
            kubelet,
            api,
            db_url,
            broker_url,
            s3_endpoint,
            values,
            converged,
            pods,
            engine,
            steps_in,
            services,
            not_run,
        )
    finally:
        kubelet.stop_all(grace=30)
        api.shutdown()
        workdir.unlink()


def _key(objects: Objects, secret: str, key: str) -> str:
    data = objects.data("Secret", secret)
    assert data is not None and key in data, f"the render has no Secret {secret} with key {key}"
    return data[key]


def _not_run(docs: list[dict[str, Any]], services: ServiceImages) -> dict[str, str]:
    """Workloads of an image this machine cannot model (``ServiceImages.missing``), and why: left out of the apply,
    so the install converges on the rest; their tests skip with the reason."""
    out = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                repository = container["image"].rsplit(":", 1)[0]
                if repository in services.missing:
                    why = f"{container['image']}: {services.missing[repository]}"
                    out[f"{doc['kind']}/{doc['metadata']['name']}"] = why
    return out


def _wait_converged(kubelet: Kubelet, started: float) -> None:
    """What ``helm install --wait`` waits for: every Job complete, every Deployment and StatefulSet with its replicas
    Ready (as the kubelet's probers judge them). A Job past its backoffLimit, or a pod the kubelet cannot set up,
    fails at once; a container in a crash loop is only waited for (it may recover), and named when time is up."""
    while True:
        waiting = []
        for workload in list(kubelet.workloads.values()):
            unstartable = [p for p in workload.live() if p.phase == "Failed" and workload.kind != "Job"]
            if workload.state == "Failed" or unstartable:
                details = "\n".join(p.describe() for p in (unstartable or workload.pods))
                raise AssertionError(f"the install did not converge: {workload.key} {workload.reason}\n{details}")
            if workload.kind == "Job":
                if workload.state != "Complete":
                    waiting.append(workload)
            elif sum(map(pod_ready, workload.live())) < workload.replicas:
                waiting.append(workload)
        if not waiting:
            return
        if time.monotonic() - started > START_BOUND:
            crashing = [
                f"{pod.name}/{run.name}: {run.restarts} restarts, last {run.last} {run.waiting}".rstrip()
                for workload in waiting
                for pod in workload.live()
                for run in [*pod.init, *pod.containers]
                if run.restarts or run.waiting
            ]
            loops = "crash loops:\n  " + "\n  ".join(crashing) + "\n" if crashing else ""
            details = "\n".join(p.describe() for w in waiting for p in w.live())
            names = ", ".join(w.key for w in waiting)
            raise AssertionError(f"not converged after {START_BOUND:.0f} s: {names}\n{loops}{details}")
        time.sleep(1)
