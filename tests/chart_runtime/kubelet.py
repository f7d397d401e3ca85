"""Run a rendered chart's workloads as local processes: the kubelet is replaced, nothing else.

What a kubelet (with the cluster's DNS and service proxy) does for a pod, this does the same way:
- each container runs its rendered ``command``/``args`` (or its image's entrypoint) with exactly its rendered
  environment: ``value`` with ``$(VAR)`` expansion, ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``
  (name, namespace, pod IP, service account) and ``envFrom``, over the image's own ``ENV``. A Secret,
  ConfigMap or key that does not exist fails the pod as ``CreateContainerConfigError`` does;
- ``configMap``, ``secret`` and ``emptyDir`` volumes are materialised under the pod's own root directory at
  their mount paths (``subPath`` included), and the container paths in its env and args are mapped there;
- init containers run first, in order, each to success; a Job's pod runs to completion; a Deployment or
  StatefulSet runs one pod; exec and httpGet probes run as the kubelet runs them.
What differs, because every pod shares this machine: a pod's IP is a loopback address of its own; each
declared ``containerPort`` gets a free host port, and the rendered args/env that carry that port, and every
``<service>.<namespace>.svc`` address, are rewritten to it. Containers run as the current user.
Images are modelled (``Image``): the platform image is this virtualenv with the official Airflow image's
environment, entrypoint dispatch and the DAGs baked at /opt/airflow/dags.

An image built on this machine can be run for real instead (``Image.engine``: the step image, whose pods the
kubernetes launcher creates): such a pod runs in that image through the container engine, translated by the
container launcher's own ``container_spec``/``engine_args`` (so harness and launcher cannot drift): its user and
groups, read-only root with its emptyDir volumes as the only writable places, capabilities, no-new-privileges,
seccomp, memory and CPU limits, labels; the host's network (the artifact store is moto's S3 on localhost) and
its ``envFrom`` Secret. Its output lands in the same per-container log file; its status says ``OOMKilled`` when
the kernel killed it at its memory limit; the container is removed when the pod ends (and at ``stop_all``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sluice.launchers.base import StepFailed
from sluice.launchers.container import (
    ContainerSpec,
    cgroup_parent,
    container_spec,
    engine_args,
    high_water,
    out_of_memory,
    remove_cgroups,
)
from sluice.launchers.engine import Engine

Doc = dict[str, Any]
HARNESS_LABEL = "sluice.io/harness"  # on every container a Kubelet starts: what stop_all removes, whatever happened


class PodError(RuntimeError):
    """The pod could not start or run; the message is what ``kubectl describe`` would say."""


@dataclass
class Image:
    """What the harness knows of an image: ENV, ENTRYPOINT (a function of the args), WORKDIR, baked paths."""

    env: dict[str, str]
    entrypoint: Callable[[list[str]], list[str]]
    baked: dict[str, Path] = field(default_factory=dict)
    workdir: str = "/"
    # ENV that names this machine's paths (the virtualenv's bin on PATH): never mapped into a pod's root.
    host_env: dict[str, str] = field(default_factory=dict)
    # Built on this machine: its pods run in it through this engine, as the container launcher runs a step pod
    # (the fields above then go unused). None: its pods run as processes, modelled as above.
    engine: Engine | None = None


def official_airflow_entrypoint(args: list[str]) -> list[str]:
    """The official apache/airflow image's dispatch: ``bash`` and ``python`` run as given, ``airflow X`` and
    any other command run as ``airflow X`` (so a bare ``sluice ...`` fails there, and here)."""
    if args[:1] in (["bash"], ["python"]):
        return args
    if args[:1] == ["airflow"]:
        return args
    return ["airflow", *args]


# ---- the API objects ---------------------------------------------------------------------------------
class Objects:
    """Secrets and ConfigMaps the pods read: the render's and those the user created before installing."""

    def __init__(self, docs: list[Doc]) -> None:
        self.docs = docs

    def find(self, kind: str, name: str) -> Doc | None:
        return next((d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name), None)

    def data(self, kind: str, name: str) -> dict[str, str] | None:
        doc = self.find(kind, name)
        if doc is None:
            return None
        if kind == "Secret":
            out = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
            return out | dict(doc.get("stringData") or {})
        return dict(doc.get("data") or {})

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]


# ---- network: pod IPs, host ports, service addresses ---------------------------------------------------
class Network:
    """Pod IPs (127.0.0.N), a host port per (workload, containerPort), and Service → host port."""

    SERVICE = re.compile(
        r"\b(?P<svc>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?(:(?P<port>\d+))?"
    )

    def __init__(self, objects: Objects, namespace: str) -> None:
        self.objects, self.namespace = objects, namespace
        self.ports: dict[tuple[str, int], int] = {}
        self.next_ip = 10

    def pod_ip(self) -> str:
        self.next_ip += 1
        return f"127.0.0.{self.next_ip}"

    def host_port(self, workload: str, container_port: int) -> int:
        key = (workload, container_port)
        if key not in self.ports:
            from sluice.stack.services import free_port

            self.ports[key] = free_port()
        return self.ports[key]

    def service_target(self, service: str, port: int | None) -> str | None:
        """``127.0.0.1:<host port>`` of the pod behind a Service port, as the service proxy would route it."""
        svc = self.objects.find("Service", service)
        if svc is None:
            return None
        ports = svc["spec"]["ports"]
        entry = next((p for p in ports if port is None or p["port"] == port), None)
        if entry is None:
            return None
        target = entry.get("targetPort", entry["port"])
        for workload in self.objects.docs:
            if workload["kind"] not in ("Deployment", "StatefulSet"):
                continue
            template = workload["spec"]["template"]
            labels = template["metadata"].get("labels", {})
            if not all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
                continue
            for container in template["spec"]["containers"]:
                for declared in container.get("ports", []):
                    if target in (declared.get("name"), declared["containerPort"]):
                        name = f"{workload['kind']}/{workload['metadata']['name']}"
                        return f"127.0.0.1:{self.host_port(name, declared['containerPort'])}"
        return None

    def rewrite_services(self, text: str) -> str:
        def route(match: re.Match[str]) -> str:
            if match["ns"] != self.namespace:
                return match[0]
            target = self.service_target(match["svc"], int(match["port"]) if match["port"] else None)
            return target or match[0]

        return self.SERVICE.sub(route, text)


# ---- pods ---------------------------------------------------------------------------------------------
@dataclass
class ContainerRun:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    spec: Doc
    ports: dict[int, int]  # containerPort -> host port
    root: Path  # the container's filesystem root on this machine
    paths: list[str]  # container paths mapped under ``root`` (mounts, baked paths, homes), longest first
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    seconds: float | None = None
    reason: str = ""  # why it terminated, where that is more than its exit code says (OOMKilled)
    in_engine: InEngine | None = None  # run in its built image through the engine, not as a process


@dataclass
class InEngine:
    """A pod's container run through the container engine: ``argv`` is the engine's ``run``."""

    engine: Engine
    spec: ContainerSpec  # the pod as the container launcher translates it
    scratch: Path  # host directory behind its emptyDir volumes, and its cid file
    # What the engine ran, read once it ended (before it is removed): the container, its image's id and name.
    container_id: str | None = None
    image_id: str | None = None
    image: str | None = None
    removed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Pod:
    name: str
    workload: str  # e.g. Deployment/sluice-scheduler, Job/sluice-migrate-…, Pod/<name> (API-created)
    spec: Doc
    labels: dict[str, str]
    ip: str
    root: Path
    init: list[ContainerRun] = field(default_factory=list)
    containers: list[ContainerRun] = field(default_factory=list)
    phase: str = "Pending"
    reason: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: threading.Event = field(default_factory=threading.Event)
    deleted: bool = False  # stop() was called: no container of it starts after that
    lock: threading.Lock = field(default_factory=threading.Lock)

    def container(self, name: str) -> ContainerRun:
        return next(c for c in [*self.init, *self.containers] if c.name == name)

    def describe(self) -> str:
        lines = [f"pod {self.name} ({self.workload}): {self.phase} {self.reason}".rstrip()]
        for run in [*self.init, *self.containers]:
            tail = run.log.read_text(errors="replace")[-3000:] if run.log.exists() else ""
            box = run.in_engine
            shown = f"in {box.engine.name}: {box.spec.image} {box.spec.entrypoint + box.spec.args}" if box else ""
            lines.append(f"--- {run.name} exit={run.exit_code} {run.reason} {shown or run.argv[:6]}\n{tail}")
        return "\n".join(lines)


class Kubelet:
    """Starts pods from rendered workloads (``apply``) or from the API stand-in (``run_api_pod``)."""

    def __init__(
        self,
        objects: Objects,
        images: dict[str, Image],
        namespace: str,
        workdir: Path,
        provided: dict[str, Path] | None = None,
    ) -> None:
        """``provided``: files the kubelet puts into every container (as it mounts a service account's token)."""
        self.objects, self.images, self.namespace = objects, images, namespace
        self.workdir = workdir
        self.provided = provided or {}
        self.network = Network(objects, namespace)
        self.pods: dict[str, Pod] = {}
        self.on_status: Callable[[Pod], None] = lambda pod: None
        self.lock = threading.Lock()
        self.id = uuid.uuid4().hex[:12]  # the HARNESS_LABEL value of this kubelet's containers

    # ---- public ------------------------------------------------------------------------------------
    def apply(self, docs: list[Doc]) -> list[Pod]:
        """Like ``kubectl apply`` of the whole render: every Job and one pod per Deployment/StatefulSet,
        all at once (no ordering but what init containers impose)."""
        pods = []
        for doc in docs:
            if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
                template = doc["spec"]["template"]
                name = f"{doc['metadata']['name']}-{uuid.uuid4().hex[:5]}"
                workload = f"{doc['kind']}/{doc['metadata']['name']}"
                pods.append(self._start(name, workload, template["spec"], template["metadata"].get("labels", {})))
        return pods

    def run_api_pod(self, manifest: Doc) -> Pod:
        meta = manifest["metadata"]
        return self._start(meta["name"], f"Pod/{meta['name']}", manifest["spec"], meta.get("labels", {}))

    def pod_of(self, workload: str) -> Pod:
        found = [p for p in self.pods.values() if p.workload == workload]
        if not found:
            raise KeyError(f"no pod of {workload}; have {sorted({p.workload for p in self.pods.values()})}")
        return found[-1]

    def pod_by_ip(self, ip: str) -> Pod | None:
        return next((p for p in self.pods.values() if p.ip == ip), None)

    def logs(self, name: str, follow: bool) -> Iterator[bytes]:
        """The pod's first container's log; with ``follow``, until that container exits."""
        pod = self.pods.get(name)
        if pod is None:
            return
        while not pod.containers and not pod.finished.is_set():
            time.sleep(0.2)
        if not pod.containers:
            return
        run = pod.containers[0]
        offset = 0
        while True:
            done = run.exit_code is not None or pod.finished.is_set()
            if run.log.exists():
                with run.log.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                offset += len(chunk)
                yield chunk
            if done or not follow:
                return
            time.sleep(0.3)

    def stop(self, name: str, grace: float = 30.0) -> None:
        pod = self.pods.get(name)
        if pod is None:
            return
        with pod.lock:
            pod.deleted = True
        for run in [*pod.containers, *pod.init]:
            _terminate(run, grace)
        pod.finished.wait(timeout=grace + 5)
        for run in [*pod.containers, *pod.init]:
            _remove(run)  # nothing of a deleted pod stays in the engine, even if it did not end in time

    def stop_all(self, grace: float = 30.0) -> None:
        threads = [threading.Thread(target=self.stop, args=(name, grace)) for name in list(self.pods)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in {image.engine for image in self.images.values() if image.engine is not None}:
            for name in self.containers(engine):  # whatever escaped the above (a pod still being set up...)
                engine.run("rm", "-f", "-t", "0", name, timeout=120)
                remove_cgroups(cgroup_parent(engine, name))

    def containers(self, engine: Engine) -> list[str]:
        """The engine's containers this kubelet started that still exist (running or not)."""
        done = engine.run("ps", "-a", "--format", "{{.Names}}", "--filter", f"label={HARNESS_LABEL}={self.id}")
        return done.stdout.split()

    def probe(self, pod: Pod, container: str, kind: str) -> tuple[bool, str]:
        """Run one of a container's rendered probes (``livenessProbe``, ``readinessProbe``, ``startupProbe``)."""
        run = next(c for c in pod.containers if c.name == container)
        probe = run.spec.get(kind)
        if probe is None:
            raise KeyError(f"{pod.workload} container {container} has no {kind}")
        if "exec" in probe:
            argv = [
                self._rewrite(_expand(a, run.env), run.root, run.paths, run.ports) for a in probe["exec"]["command"]
            ]
            argv[0] = _which(argv[0], run.env)
            timeout = float(probe.get("timeoutSeconds", 1))
            try:
                done = subprocess.run(argv, env=run.env, cwd=run.cwd, capture_output=True, timeout=max(timeout, 60))
            except subprocess.TimeoutExpired:
                return False, f"exec {probe['exec']['command']} timed out"
            output = (done.stdout + done.stderr).decode(errors="replace").strip()
            return done.returncode == 0, f"exit {done.returncode}: {output[-300:]}"
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in run.spec.get("ports", []) if p.get("name") == port)
            url = f"http://127.0.0.1:{run.ports[port]}{get.get('path', '/')}"
            try:
                response = httpx.get(url, timeout=float(probe.get("timeoutSeconds", 1)) + 4)
            except httpx.HTTPError as exc:
                return False, f"GET {get.get('path')}: {type(exc).__name__}"
            return 200 <= response.status_code < 400, f"GET {get.get('path')}: {response.status_code}"
        raise PodError(f"{pod.workload}: probe kind {sorted(probe)} is not supported by the harness")

    # ---- starting a pod ------------------------------------------------------------------------------
    def _start(self, name: str, workload: str, spec: Doc, labels: dict[str, str]) -> Pod:
        pod = Pod(name, workload, spec, labels, self.network.pod_ip(), self.workdir / "pods" / name)
        with self.lock:
            self.pods[name] = pod
        try:
            self._prepare(pod)
        except PodError as exc:
            for run in pod.containers:
                _remove(run)
            pod.phase, pod.reason = "Failed", str(exc)
            pod.finished.set()
            self.on_status(pod)
            return pod
        threading.Thread(target=self._run, args=(pod,), name=f"pod-{name}", daemon=True).start()
        return pod

    def _prepare(self, pod: Pod) -> None:
        """Volumes, env and argv of every container, as the kubelet resolves them before starting any."""
        specs = [*pod.spec.get("initContainers", []), *pod.spec["containers"]]
        engine = next((e for e in (self._image(c["image"]).engine for c in specs) if e is not None), None)
        if engine is not None:
            self._in_engine(pod, engine)
            return
        volumes = self._volumes(pod)
        pod.init = [self._container(pod, c, volumes) for c in pod.spec.get("initContainers", [])]
        pod.containers = [self._container(pod, c, volumes) for c in pod.spec["containers"]]

    def admit(self, docs: list[Doc]) -> dict[str, str]:
        """Without starting anything: each workload's pod as the kubelet would set it up, "ok" or the error
        it would stop at (CreateContainerConfigError, FailedMount, an image the harness does not model...)."""
        out = {}
        for doc in docs:
            if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
                workload = f"{doc['kind']}/{doc['metadata']['name']}"
                template = doc["spec"]["template"]
                pod = Pod(
                    workload.replace("/", "-").lower(),
                    workload,
                    template["spec"],
                    {},
                    "127.0.0.2",
                    self.workdir / "admit" / workload,
                )
                try:
                    self._prepare(pod)
                    out[workload] = "ok"
                except PodError as exc:
                    out[workload] = str(exc)
        return out

    def _run(self, pod: Pod) -> None:
        restart = pod.spec.get("restartPolicy", "Always")
        for run in pod.init:
            if not _launch_unless_deleted(pod, run):
                return self._deleted_before_start(pod)
            _wait(run)
            if run.exit_code != 0:
                pod.phase, pod.reason = "Failed", f"Init:Error ({run.name} exited {run.exit_code})"
                pod.finished.set()
                self.on_status(pod)
                return
        for run in pod.containers:
            if not _launch_unless_deleted(pod, run):
                return self._deleted_before_start(pod)
        pod.phase = "Running"
        self.on_status(pod)
        for run in pod.containers:
            _wait(run)
        failed = [r for r in pod.containers if r.exit_code != 0]
        if restart == "Always":
            pod.reason = "a container exited (the harness does not restart it)"
        pod.phase = "Failed" if failed or restart == "Always" else "Succeeded"
        pod.finished.set()
        self.on_status(pod)

    def _deleted_before_start(self, pod: Pod) -> None:
        for run in [*pod.containers, *pod.init]:
            _remove(run)
        pod.phase, pod.reason = "Failed", "deleted before all its containers started"
        pod.finished.set()
        self.on_status(pod)

    def _in_engine(self, pod: Pod, engine: Engine) -> None:
        """The pod's one container, to run in its image through the engine as the container launcher runs a step
        pod: the launcher's ``container_spec`` reads the pod (refusing what it cannot honour) and ``engine_args``
        makes the engine's arguments. The kubelet's part stays the kubelet's: ``$(VAR)`` expansion, Service
        addresses routed (the pod shares the host's network), the ``envFrom`` Secret resolved."""
        if len(pod.spec["containers"]) != 1 or pod.spec.get("initContainers"):
            raise PodError(f"pod {pod.name}: the harness runs pods of built images with one container, no init")
        main = copy.deepcopy(pod.spec["containers"][0])
        host_env = self._env_from(main)
        known = dict(host_env)
        for entry in main.get("env", []):
            if "value" in entry:
                entry["value"] = self.network.rewrite_services(_expand(str(entry["value"]), known))
                known[entry["name"]] = entry["value"]
        for key in ("command", "args"):
            if key in main:
                main[key] = [self.network.rewrite_services(_expand(str(a), known)) for a in main[key]]
        labels = {**pod.labels, HARNESS_LABEL: self.id}
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod.name, "labels": labels}}
        try:
            spec = container_spec(_v1_pod({**manifest, "spec": {**pod.spec, "containers": [main]}}))
        except StepFailed as exc:
            raise PodError(f"pod {pod.name}: the container launcher's translation refuses it: {exc}") from None
        scratch = pod.root / f"scratch-{main['name']}"
        scratch.mkdir(parents=True)
        args, env = engine_args(engine, spec, scratch=scratch, network=True, mounts=[], host_env=host_env)
        log = pod.root / f"{main['name']}.log"
        box = InEngine(engine, spec, scratch)
        run = ContainerRun(main["name"], engine.command("run", *args), env, pod.root, log, main, {}, pod.root, [])
        run.in_engine = box
        pod.containers = [run]
        if not engine.image_exists(spec.image):  # the harness never pulls (the container's status says why it waits)
            raise PodError(f"ErrImageNeverPull: image {spec.image} is not built on this machine (make images)")

    def _image(self, ref: str) -> Image:
        repository = ref.rsplit(":", 1)[0]
        if repository not in self.images:
            raise PodError(f"image {ref}: the harness models only {sorted(self.images)}")
        return self.images[repository]

    def _volumes(self, pod: Pod) -> dict[str, Path]:
        """Each pod volume as a host directory (configMap/secret keys as files)."""
        out: dict[str, Path] = {}
        for volume in pod.spec.get("volumes", []):
            path = pod.root / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                pass
            elif "configMap" in volume or "secret" in volume:
                kind, source = (
                    ("ConfigMap", volume["configMap"]) if "configMap" in volume else ("Secret", volume["secret"])
                )
                name = source.get("name") or source.get("secretName")
                data = self.objects.data(kind, name)
                if data is None:
                    if source.get("optional"):
                        continue
                    raise PodError(f'FailedMount: {kind.lower()} "{name}" not found (volume {volume["name"]})')
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        raise PodError(f'FailedMount: {kind.lower()} "{name}" has no key {item["key"]}')
                    (path / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (path / item["path"]).write_text(data[item["key"]])
            else:
                raise PodError(f"volume {volume['name']}: type {sorted(volume)} is not supported by the harness")
            out[volume["name"]] = path
        return out

    def _container(self, pod: Pod, spec: Doc, volumes: dict[str, Path]) -> ContainerRun:
        image = self._image(spec["image"])
        root = pod.root / "fs" / spec["name"]
        mounts = {**image.baked, **self.provided}
        for mount in spec.get("volumeMounts", []):
            if mount["name"] not in volumes:
                raise PodError(f"container {spec['name']}: volume {mount['name']} is not defined in the pod")
            source = volumes[mount["name"]]
            mounts[mount["mountPath"]] = source / mount["subPath"] if mount.get("subPath") else source
        for home_like in ("AIRFLOW_HOME", "HOME"):
            if home_like in image.env:
                (root / image.env[home_like].lstrip("/")).mkdir(parents=True, exist_ok=True)
        for target, source in sorted(mounts.items()):
            place = root / target.lstrip("/")
            place.parent.mkdir(parents=True, exist_ok=True)
            if place.is_symlink() or place.exists():
                shutil.rmtree(place) if place.is_dir() and not place.is_symlink() else place.unlink()
            place.symlink_to(source)
        ports = {
            p["containerPort"]: self.network.host_port(pod.workload, p["containerPort"]) for p in spec.get("ports", [])
        }
        env = self._env(pod, spec, image)
        paths = sorted(
            {*mounts, *(v for k, v in image.env.items() if k in ("AIRFLOW_HOME", "HOME"))}, key=len, reverse=True
        )
        pod.root.mkdir(parents=True, exist_ok=True)
        env = {k: self._rewrite(v, root, paths, ports) for k, v in env.items()}
        declared = {entry["name"] for entry in spec.get("env", [])}
        env.update({k: v for k, v in image.host_env.items() if k not in declared})
        args = list(spec.get("args", []))
        argv = [*spec["command"], *args] if spec.get("command") else image.entrypoint(args)
        argv = [self._rewrite(_expand(a, env), root, paths, ports) for a in argv]
        argv[0] = _which(argv[0], env)
        cwd = root / (spec.get("workingDir") or image.workdir).lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        log = pod.root / f"{spec['name']}.log"
        return ContainerRun(spec["name"], argv, env, cwd, log, spec, ports, root, paths)

    def _env(self, pod: Pod, spec: Doc, image: Image) -> dict[str, str]:
        env: dict[str, str] = dict(image.env) | self._env_from(spec)
        for entry in spec.get("env", []):
            if "value" in entry or "valueFrom" not in entry:
                env[entry["name"]] = _expand(str(entry.get("value", "")), env)
                continue
            source = entry["valueFrom"]
            if "fieldRef" in source:
                env[entry["name"]] = self._field(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind, ref = (
                    ("Secret", source["secretKeyRef"])
                    if "secretKeyRef" in source
                    else ("ConfigMap", source["configMapKeyRef"])
                )
                data = self.objects.data(kind, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    missing = (
                        f'{kind.lower()} "{ref["name"]}" not found'
                        if data is None
                        else f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}"
                    )
                    raise PodError(
                        f"CreateContainerConfigError: {missing} (env {entry['name']} of container {spec['name']})"
                    )
                env[entry["name"]] = data[ref["key"]]
            else:
                raise PodError(f"env {entry['name']}: valueFrom {sorted(source)} is not supported by the harness")
        return env

    def _env_from(self, spec: Doc) -> dict[str, str]:
        """A container's ``envFrom``: every key of the Secrets and ConfigMaps it names, prefixed."""
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            kind, ref = (
                ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
            )
            data = self.objects.data(kind, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise PodError(f'CreateContainerConfigError: {kind.lower()} "{ref["name"]}" not found')
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        return env

    def _field(self, pod: Pod, path: str) -> str:
        fields = {
            "metadata.name": pod.name,
            "metadata.namespace": self.namespace,
            "status.podIP": pod.ip,
            "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
            "spec.nodeName": "harness",
        }
        if path not in fields:
            raise PodError(f"fieldRef {path} is not supported by the harness")
        return fields[path]

    def _rewrite(self, value: str, root: Path, paths: list[str], ports: dict[int, int]) -> str:
        """Container paths → the container's root, declared ports → host ports, Service addresses → host ports."""
        if paths:  # one pass, longest path first: a mapped path is never mapped again
            pattern = "|".join(re.escape(p) for p in paths)
            value = re.sub(rf"(?<![\w.-])(?:{pattern})(?=$|[/\s:;,\"'])", lambda m: str(root) + m[0], value)
        if value in {str(p) for p in ports}:
            value = str(ports[int(value)])
        return self.network.rewrite_services(value)


# ---- processes ------------------------------------------------------------------------------------------
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion (``$$`` escapes; unknown references stay as written)."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VAR.sub(one, text)


def _which(command: str, env: dict[str, str]) -> str:
    if "/" in command:
        return command
    found = shutil.which(command, path=env.get("PATH"))
    if not found:
        raise PodError(f'exec: "{command}": executable file not found in $PATH')
    return found


def _launch(run: ContainerRun) -> None:
    run.log.parent.mkdir(parents=True, exist_ok=True)
    with run.log.open("ab") as log:
        run.proc = subprocess.Popen(
            run.argv, env=run.env, cwd=run.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    run.seconds = time.monotonic()


def _launch_unless_deleted(pod: Pod, run: ContainerRun) -> bool:
    with pod.lock:
        if pod.deleted:
            return False
        _launch(run)
        return True


def _wait(run: ContainerRun) -> None:
    assert run.proc is not None
    code = run.proc.wait()
    box = run.in_engine
    if box is not None:
        # As the container launcher tells an out-of-memory kill: the engine says so, or (podman on cgroup v1) it
        # died of SIGKILL with its cgroup parent's high-water mark near the limit. Then it is removed.
        parent = cgroup_parent(box.engine, box.name)
        if out_of_memory(box.engine, box.spec, code, [high_water(parent)]):
            run.reason = "OOMKilled"
        ran = box.engine.run("inspect", "--format", "{{.Id}} {{.Image}} {{.ImageName}}", box.name).stdout.split()
        if len(ran) == 3:
            box.container_id, box.image_id, box.image = ran
        _remove(run)
    run.seconds = time.monotonic() - (run.seconds or time.monotonic())
    run.exit_code = code


def _remove(run: ContainerRun) -> None:
    """Remove an engine-run container, its cgroup parent and its scratch directory (once; a no-op for processes)."""
    box = run.in_engine
    if box is None:
        return
    with box.lock:
        if box.removed:
            return
        box.removed = True
        box.engine.run("rm", "-f", "-t", "0", box.name, timeout=120)
        remove_cgroups(cgroup_parent(box.engine, box.name))
        shutil.rmtree(box.scratch, ignore_errors=True)


def _v1_pod(manifest: Doc) -> Any:
    """A manifest as the kubernetes client's ``V1Pod`` (what ``container_spec`` reads)."""
    from kubernetes.client import ApiClient

    class Response:
        data = json.dumps(manifest)

    return ApiClient().deserialize(Response(), "V1Pod")


def _terminate(run: ContainerRun, grace: float) -> None:
    """SIGTERM to the container's process group, SIGKILL after the grace period (as the kubelet does); an
    engine-run container is stopped by its engine the same way."""
    proc = run.proc
    if proc is None or proc.poll() is not None:
        return
    if run.in_engine is not None:
        run.in_engine.engine.run("stop", "-t", str(round(grace)), run.in_engine.name, timeout=grace + 60)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def to_yaml(doc: Doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
