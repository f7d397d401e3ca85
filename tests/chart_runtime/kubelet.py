"""Run a rendered chart's workloads as local processes: the kubelet is replaced, nothing else.

What a kubelet (with the cluster's DNS and service proxy) does for a pod, this does the same way:
- each container runs its rendered ``command``/``args`` (or its image's entrypoint) with exactly its rendered
  environment: ``value`` with ``$(VAR)`` expansion, ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``
  (name, namespace, pod IP, service account) and ``envFrom``, over the image's own ``ENV``. A Secret,
  ConfigMap or key that does not exist fails the pod as ``CreateContainerConfigError`` does;
- ``configMap``, ``secret`` and ``emptyDir`` volumes are materialised under the pod's own root directory at
  their mount paths (``subPath`` included), and the container paths in its env and args are mapped there; a
  ``persistentVolumeClaim`` (a StatefulSet's claim templates: ``<template>-<set>-<ordinal>``) is a directory of the
  kubelet's that outlives the pod;
- init containers run first, in order, each to success; then every container at once;
- each workload's controller does its part: a Deployment runs ``spec.replicas`` pods (absent: 1, as the API
  server defaults it, e.g. under KEDA; 0: none), a StatefulSet its ordinals ``<name>-0``, ``-1``... in order (each
  once the one before is ready; all at once with ``podManagementPolicy: Parallel``), a Job one pod until it
  succeeds, or until its failures pass ``backoffLimit`` (each failed container under ``restartPolicy: OnFailure``;
  each failed pod under ``Never``, replaced after the Job controller's back-off, 10 s doubling to 6 min): the Job
  is then Failed and its pod deleted. Not modelled: a Job's parallelism/completions, rollouts, scaling later;
- a container that exits is restarted per its pod's ``restartPolicy`` (Always: after any exit; OnFailure: after
  a non-zero one; Never: not; an init container until it exits 0, unless Never) with the kubelet's crash-loop
  back-off (its flowcontrol.Backoff): the first restart at once, each later one after 10 s, 20 s... up to 300 s,
  back to the start when the container ran 10 min since its last restart. Meanwhile it is ``waiting:
  CrashLoopBackOff``; ``restartCount`` and ``lastState.terminated`` say what happened. A deleted pod's containers
  are never restarted;
- each container's probes run as the kubelet's probe workers, a thread each: ``startupProbe`` first (liveness
  and readiness wait until it succeeded; failureThreshold failures in a row kill the container),
  ``livenessProbe`` (failureThreshold failures in a row: SIGTERM, the grace period, SIGKILL, then a restart per
  restartPolicy), ``readinessProbe`` (Ready after successThreshold successes in a row, unready after
  failureThreshold failures in a row), each ticking every ``periodSeconds`` from the container's start and trying
  from the first tick past ``initialDelaySeconds``, a try failing at ``timeoutSeconds`` (exec: its process group
  killed; httpGet; tcpSocket).
  A pod is Ready when each container runs, has started and is ready; a Service sends each new connection to a
  Ready pod behind it, in turn, and refuses it when there is none (``ServiceProxy``, kube-proxy's part).
  One harness factor, ``PROBE_TIMEOUT_SCALE`` (2; env SLUICE_PROBE_TIMEOUT_SCALE), multiplies each probe's
  ``timeoutSeconds``: a pod here gets a small share of 2 shared cores, not the CPU its request buys on a cluster
  (see PROBE_TIMEOUT_SCALE). Periods, delays and thresholds are the rendered ones.
What differs, because every pod shares this machine: a pod's IP is a loopback address of its own; each
declared ``containerPort`` gets a free host port per pod, and the rendered args/env that carry that port are
rewritten to it; a ``<service>.<namespace>.svc[:port]`` address is rewritten to the Service port's stable
address, its proxy's ``127.0.0.1:<port>``. Containers run as the current user.
Images are modelled (``Image``): the platform image is this virtualenv with the official Airflow image's
environment, entrypoint dispatch and the DAGs baked at /opt/airflow/dags; the bundled postgres, redis and
statsd-exporter images are this machine's binaries of the same programs behind models of their entrypoints
(``services.py``), stopped with their STOPSIGNAL. A value that is only a Service's name (statsd's host) becomes
its ClusterIP, whose UDP ports the harness forwards to the ready pods behind it.

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
import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
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
    # STOPSIGNAL: what the kubelet (through the runtime) sends to stop its containers (postgres': SIGINT).
    stop_signal: int = signal.SIGTERM


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
    """Pod IPs (127.0.0.N), a host port per (pod, containerPort), and per TCP Service port a stable address whose
    connections its ``ServiceProxy`` sends to the ready pods behind it."""

    SERVICE = re.compile(
        r"\b(?P<svc>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?(:(?P<port>\d+))?"
    )

    def __init__(self, objects: Objects, namespace: str, ready: Callable[[], list[Pod]] | None = None) -> None:
        self.objects, self.namespace = objects, namespace
        self.ready = ready or list  # the pods a Service may send to now (the kubelet's ready pods)
        self.tcp: dict[tuple[str, int], ServiceProxy] = {}  # (Service, port) → its proxy
        self.ports: dict[tuple[str, int], int] = {}
        self.next_ip = 10
        self.proxies: dict[str, tuple[str, list[UdpProxy]]] = {}  # Service → its ClusterIP and UDP forwarders
        self.lock = threading.Lock()

    def pod_ip(self) -> str:
        with self.lock:
            self.next_ip += 1
            n = self.next_ip
        return f"127.0.0.{n}" if n < 255 else f"127.1.{(n - 255) >> 8 & 255}.{(n - 255) & 255}"

    def host_port(self, pod: str, container_port: int) -> int:
        """The host port standing for a pod's containerPort: each pod its own, as each has its own IP."""
        with self.lock:
            key = (pod, container_port)
            if key not in self.ports:
                from sluice.stack.services import free_port

                self.ports[key] = free_port()
            return self.ports[key]

    def _service_port(self, service: str, port: int | None) -> tuple[Doc, Doc] | None:
        svc = self.objects.find("Service", service)
        if svc is None:
            return None
        entry = next((p for p in svc["spec"]["ports"] if port is None or p["port"] == port), None)
        return None if entry is None else (svc, entry)

    def service_target(self, service: str, port: int | None) -> str | None:
        """The stable address standing for a TCP Service port (its ClusterIP:port): ``127.0.0.1:<port>`` of its
        ``ServiceProxy``, made on first use; None when the Service or port does not exist."""
        found = self._service_port(service, port)
        if found is None:
            return None
        key = (service, int(found[1]["port"]))
        with self.lock:
            if key not in self.tcp:
                self.tcp[key] = ServiceProxy(f"{service}:{key[1]}", functools.partial(self.endpoints, *key))
            return f"127.0.0.1:{self.tcp[key].port}"

    def endpoints(self, service: str, port: int | None) -> list[str]:
        """The Service port's endpoints now: ``127.0.0.1:<host port>`` of each ready pod its selector matches, at
        its targetPort (a port name is looked up in each pod's containers)."""
        found = self._service_port(service, port)
        if found is None:
            return []
        svc, entry = found
        target = entry.get("targetPort", entry["port"])
        selector = svc["spec"].get("selector") or {}
        out = []
        for pod in self.ready() if selector else []:
            if any(pod.labels.get(k) != v for k, v in selector.items()):
                continue
            for run in pod.containers:
                for declared in run.spec.get("ports", []):
                    number = declared["containerPort"]
                    if target in (declared.get("name"), number) and number in run.ports:
                        out.append(f"127.0.0.1:{run.ports[number]}")
        return out

    def rewrite_services(self, text: str) -> str:
        def route(match: re.Match[str]) -> str:
            if match["ns"] != self.namespace:
                return match[0]
            target = self.service_target(match["svc"], int(match["port"]) if match["port"] else None)
            return target or match[0]

        named = self.HOST.fullmatch(text)
        if named and named["ns"] in (None, self.namespace) and self.objects.find("Service", named["svc"]):
            return self.cluster_ip(named["svc"])  # a host name alone: its port is given apart (statsd's)
        return self.SERVICE.sub(route, text)

    # A value that is only a Service's name (``svc``, ``svc.ns``, ``svc.ns.svc[.cluster.local]``), as a pod's DNS
    # search path resolves it.
    HOST = re.compile(r"(?P<svc>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.(?P<ns>[a-z0-9-]+)(\.svc(\.cluster\.local)?)?)?")

    def cluster_ip(self, service: str) -> str:
        """The Service's ClusterIP: 127.2.x.y here (unique in the process), where the service proxy forwards each of
        its UDP ports to the ready pods' host port (a TCP Service is reached at its ``<svc>.<ns>.svc:<port>`` address:
        its ``ServiceProxy``)."""
        with self.lock:
            if service not in self.proxies:
                svc = self.objects.find("Service", service) or {}
                udp = [p["port"] for p in svc.get("spec", {}).get("ports", []) if p.get("protocol") == "UDP"]
                while True:  # an address no other kubelet (or program) of this machine holds these ports on
                    index = next(_CLUSTER_IPS)
                    ip = f"127.{2 + index // 64516}.{index // 254 % 254 + 1}.{index % 254 + 1}"
                    try:
                        proxies = [UdpProxy(self, service, ip, port) for port in udp]
                    except OSError:
                        continue
                    break
                self.proxies[service] = (ip, proxies)
            return self.proxies[service][0]

    def close(self) -> None:
        with self.lock:
            for _, proxies in self.proxies.values():
                for proxy in proxies:
                    proxy.close()
            for tcp in self.tcp.values():
                tcp.close()


class ServiceProxy:
    """kube-proxy's part for one TCP Service port: a stable address (``127.0.0.1:<port>``) whose every new connection
    goes to one of the port's endpoints (its ready pods), in turn; with none ready it is reset, as a Service
    without endpoints refuses it."""

    def __init__(self, name: str, endpoints: Callable[[], list[str]]) -> None:
        self.name, self.endpoints = name, endpoints
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self.turn = itertools.count()
        threading.Thread(target=self._accept, name=f"proxy-{name}", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.socket.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), name=f"proxy-{self.name}", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        endpoints = self.endpoints()
        upstream = None
        if endpoints:
            host, port = endpoints[next(self.turn) % len(endpoints)].rsplit(":", 1)
            with contextlib.suppress(OSError):
                upstream = socket.create_connection((host, int(port)), timeout=10)
        if upstream is None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closed with a reset
            client.close()
            return
        upstream.settimeout(None)
        for end in (client, upstream):  # each chunk passed on at once, as the kernel's forwarding would
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=_pipe, args=(upstream, client), name=f"proxy-{self.name}", daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.socket.close()


_CLUSTER_IPS = itertools.count()  # ClusterIPs: 127.2.1.1 on, never the same twice in one process


class UdpProxy:
    """The service proxy for one UDP Service port: datagrams to ClusterIP:port go to the pod behind it, if any."""

    def __init__(self, network: Network, service: str, ip: str, port: int) -> None:
        self.network, self.service, self.port = network, service, port
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((ip, port))
        self.socket.settimeout(0.5)
        self.stopped = threading.Event()
        # Also given every datagram, as a capture on the Service's address would see it (a test's, in place of a
        # program this machine cannot run behind the Service).
        self.taps: list[Callable[[bytes], None]] = []
        threading.Thread(target=self._forward, name=f"udp-{service}-{port}", daemon=True).start()

    def _forward(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not self.stopped.is_set():
            try:
                data, _ = self.socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            for tap in list(self.taps):
                tap(data)
            targets = self.network.endpoints(self.service, self.port)  # the ready pods behind it
            if targets:
                host, port = targets[0].rsplit(":", 1)
                out.sendto(data, (host, int(port)))
        out.close()

    def close(self) -> None:
        self.stopped.set()
        self.socket.close()


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
    # Its life over restarts, as the pod's status and ``kubectl describe`` show it.
    restarts: int = 0  # restartCount
    last: Doc | None = None  # lastState.terminated: how the run before the current one ended
    waiting: str = ""  # CrashLoopBackOff while the kubelet backs off before restarting it
    backoff: float = 0.0  # that back-off, seconds
    started_at: str = ""  # the current run's start and end (RFC 3339)
    finished_at: str = ""
    # The current run's probe state (new Events each run: the old run's probers stop with it).
    started: threading.Event = field(default_factory=threading.Event)  # its startupProbe passed, or it has none
    ready: bool = False  # its readinessProbe's verdict
    ended: threading.Event = field(default_factory=threading.Event)
    probes: dict[str, ProbeRecord] = field(default_factory=dict)  # probe kind → its tries over all runs
    stop_signal: int = signal.SIGTERM  # its image's STOPSIGNAL
    events: list[str] = field(default_factory=list)  # what the kubelet did to it and why, latest last


@dataclass
class ProbeRecord:
    """One probe's tries on one container: how many, how many failed, the slowest, the last verdict."""

    tries: int = 0
    failures: int = 0
    slowest: float = 0.0
    last: str = ""


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
    owner: Workload | None = None  # its Deployment, StatefulSet or Job (None: created through the API)
    stopping: threading.Event = field(default_factory=threading.Event)  # set with ``deleted``: ends a back-off

    def container(self, name: str) -> ContainerRun:
        return next(c for c in [*self.init, *self.containers] if c.name == name)

    def describe(self) -> str:
        lines = [f"pod {self.name} ({self.workload}): {self.phase} {self.reason}".rstrip()]
        for run in [*self.init, *self.containers]:
            tail = run.log.read_text(errors="replace")[-3000:] if run.log.exists() else ""
            box = run.in_engine
            shown = f"in {box.engine.name}: {box.spec.image} {box.spec.entrypoint + box.spec.args}" if box else ""
            state = f"exit={run.exit_code} {run.reason}".rstrip()
            if run.restarts or run.last:
                state += f" restarts={run.restarts} last={run.last}"
            if run.waiting:
                state += f" {run.waiting} (back-off {run.backoff:g} s)"
            events = "".join(f"    event: {e}\n" for e in run.events[-12:])
            lines.append(f"--- {run.name} {state} {shown or run.argv[:6]}\n{events}{tail}")
        return "\n".join(lines)


@dataclass
class Workload:
    """A rendered Deployment, StatefulSet or Job as its controller runs it: its pods and, for a Job, its end."""

    doc: Doc
    pods: list[Pod] = field(default_factory=list)
    failures: int = 0  # a Job's: failed containers (restartPolicy OnFailure) and failed pods (Never)
    state: str = ""  # a Job's condition once it ended: Complete or Failed
    reason: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def replicas(self) -> int:
        """The pods it keeps: ``spec.replicas``, 1 where absent (the API server's default); a Job one at a time."""
        return 1 if self.kind == "Job" else int(self.doc["spec"].get("replicas", 1))

    @property
    def backoff_limit(self) -> int:
        return int(self.doc["spec"].get("backoffLimit", 6))

    def live(self) -> list[Pod]:
        return [p for p in self.pods if not p.deleted]


def container_ready(run: ContainerRun) -> bool:
    """Ready as the kubelet reports a container: running, its startupProbe passed, its readinessProbe's verdict."""
    if run.proc is None or run.exit_code is not None or run.waiting or not run.started.is_set():
        return False
    return run.ready if "readinessProbe" in run.spec else True


def pod_ready(pod: Pod) -> bool:
    """The pod's Ready condition: running, not deleted, every container ready."""
    running = pod.phase == "Running" and not pod.deleted and bool(pod.containers)
    return running and all(map(container_ready, pod.containers))


def terminated(run: ContainerRun) -> Doc:
    """The container's ``terminated`` state (its last run's), as the pod's status shows it."""
    code = run.exit_code if run.exit_code is not None else -1
    reason = run.reason or ("Completed" if code == 0 else "Error")
    return {"exitCode": code, "reason": reason, "startedAt": run.started_at, "finishedAt": run.finished_at}


# The kubelet's crash-loop back-off (first, cap: seconds) and the Job controller's before it replaces a failed pod;
# a Kubelet's ``backoff`` and ``job_backoff`` override them (the unit tests shorten them).
BACKOFF = (10.0, 300.0)
JOB_BACKOFF = (10.0, 360.0)
# The one harness factor on probes: each try's timeoutSeconds is multiplied by it (2 unless SLUICE_PROBE_TIMEOUT_SCALE
# says otherwise; 1 runs the rendered timeouts). Why: every pod here shares this machine's 2 cores, where a cluster
# gives each the CPU it requests (the install's long-running pods request 4.8 cores, the step pods 1-2 more each).
# The chart's exec liveness probes are a Python CLI each (`airflow jobs check`, `celery inspect ping`: ~3.7 s of
# CPU), seven of them every 60 s, all at once; measured with the rendered 30 s: the slowest try of each took 27-30 s,
# each timed out once in a run under moderate extra load, and under heavy extra load (load average ~28) five in a
# row timed out and every Airflow component was killed mid-run. On a cluster such a try takes ~4-8 s within its
# pod's 1-CPU limit. Only how long a try takes depends on CPU: periods, delays and thresholds stay as rendered. The
# chart-smoke table prints each probe's slowest try against its rendered timeout.
PROBE_TIMEOUT_SCALE = float(os.environ.get("SLUICE_PROBE_TIMEOUT_SCALE", "2"))


class Kubelet:
    """Starts pods from rendered workloads (``apply``) or from the API stand-in (``run_api_pod``), and keeps them as
    the kubelet and the workloads' controllers do (see the module docstring)."""

    backoff: tuple[float, float] = BACKOFF
    job_backoff: tuple[float, float] = JOB_BACKOFF
    probe_timeout_scale: float = PROBE_TIMEOUT_SCALE
    stopped: bool = False  # stop_all began: no controller starts a pod after that

    def __init__(
        self,
        objects: Objects,
        images: dict[str, Image],
        namespace: str,
        workdir: Path,
        provided: dict[str, Path] | None = None,
    ) -> None:
        """``provided``: files the kubelet puts into every container (a pod's own token: ``credentials``)."""
        self.objects, self.images, self.namespace = objects, images, namespace
        self.workdir = workdir
        self.provided = provided or {}
        self.network = Network(objects, namespace, self.ready_pods)
        self.pods: dict[str, Pod] = {}
        self.workloads: dict[str, Workload] = {}  # "Deployment/<name>" → its controller's state
        self.on_status: Callable[[Pod], None] = lambda pod: None
        # A pod's ServiceAccount token, as {container path: host file} (the API stand-in's ``credentials``).
        self.credentials: Callable[[Pod], dict[str, Path]] = lambda pod: {}
        self.lock = threading.Lock()
        self.id = uuid.uuid4().hex[:12]  # the HARNESS_LABEL value of this kubelet's containers

    # ---- public ------------------------------------------------------------------------------------
    def apply(self, docs: list[Doc]) -> list[Pod]:
        """Like ``kubectl apply`` of the whole render, all at once (no ordering but what init containers impose),
        each workload's controller doing its part: a Deployment's replicas, a StatefulSet's ordinals in order, a
        Job's pod. Returns the pods started now (a StatefulSet's later ordinals come as the earlier get ready)."""
        pods = []
        for doc in docs:
            if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
                continue
            workload = Workload(doc)
            with self.lock:
                self.workloads[workload.key] = workload
            policy = doc["spec"].get("podManagementPolicy", "OrderedReady")
            if workload.kind == "StatefulSet" and policy == "OrderedReady" and workload.replicas > 1:
                pods.append(self._spawn(workload, 0))
                ordered = threading.Thread(target=self._in_order, args=(workload,), name=f"sts-{workload.name}")
                ordered.daemon = True
                ordered.start()
            else:
                pods += [self._spawn(workload, ordinal) for ordinal in range(workload.replicas)]
        return pods

    def run_api_pod(self, manifest: Doc) -> Pod:
        meta = manifest["metadata"]
        return self._start(meta["name"], f"Pod/{meta['name']}", manifest["spec"], meta.get("labels", {}))

    def pod_of(self, workload: str) -> Pod:
        """The newest pod of a workload (one of a Deployment's replicas: ``pods_of`` gives them all)."""
        found = [p for p in list(self.pods.values()) if p.workload == workload]
        if not found:
            raise KeyError(f"no pod of {workload}; have {sorted({p.workload for p in list(self.pods.values())})}")
        return found[-1]

    def pods_of(self, workload: str) -> list[Pod]:
        """A workload's pods that are not deleted, oldest first."""
        return [p for p in list(self.pods.values()) if p.workload == workload and not p.deleted]

    def ready_pods(self) -> list[Pod]:
        """The pods whose Ready condition is true now: what Services send to."""
        return [p for p in list(self.pods.values()) if pod_ready(p)]

    def pod_by_ip(self, ip: str) -> Pod | None:
        return next((p for p in list(self.pods.values()) if p.ip == ip), None)

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

    def stop(self, name: str, grace: float | None = None) -> None:
        """Delete a pod as the kubelet does: SIGTERM, ``grace`` seconds (the pod's terminationGracePeriodSeconds
        unless given), SIGKILL; no container of it starts or restarts after that."""
        pod = self.pods.get(name)
        if pod is None:
            return
        if grace is None:
            grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        with pod.lock:
            pod.deleted = True
            pod.stopping.set()
        for run in [*pod.containers, *pod.init]:
            _terminate(run, grace)
        pod.finished.wait(timeout=grace + 5)
        for run in [*pod.containers, *pod.init]:
            _remove(run)  # nothing of a deleted pod stays in the engine, even if it did not end in time

    def stop_all(self, grace: float = 30.0) -> None:
        self.stopped = True
        threads = [threading.Thread(target=self.stop, args=(name, grace)) for name in list(self.pods)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in {image.engine for image in self.images.values() if image.engine is not None}:
            for name in self.containers(engine):  # whatever escaped the above (a pod still being set up...)
                engine.run("rm", "-f", "-t", "0", name, timeout=120)
                remove_cgroups(cgroup_parent(engine, name))
        self.network.close()

    def containers(self, engine: Engine) -> list[str]:
        """The engine's containers this kubelet started that still exist (running or not)."""
        done = engine.run("ps", "-a", "--format", "{{.Names}}", "--filter", f"label={HARNESS_LABEL}={self.id}")
        return done.stdout.split()

    def probe(self, pod: Pod, container: str, kind: str) -> tuple[bool, str]:
        """Try one of a container's rendered probes (``livenessProbe``, ``readinessProbe``, ``startupProbe``) once,
        as the kubelet tries it: failed when it takes longer than its ``timeoutSeconds`` (x ``probe_timeout_scale``)."""
        run = next(c for c in pod.containers if c.name == container)
        probe = run.spec.get(kind)
        if probe is None:
            raise KeyError(f"{pod.workload} container {container} has no {kind}")
        timeout = float(probe.get("timeoutSeconds", 1)) * self.probe_timeout_scale
        if "exec" in probe:
            argv = [
                self._rewrite(_expand(a, run.env), run.root, run.paths, run.ports) for a in probe["exec"]["command"]
            ]
            argv[0] = _which(argv[0], run.env)
            return _exec_probe(argv, run.env, run.cwd, timeout)
        if "httpGet" in probe or "tcpSocket" in probe:
            action = probe.get("httpGet") or probe["tcpSocket"]
            port = action["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in run.spec.get("ports", []) if p.get("name") == port)
            if port not in run.ports:
                raise PodError(f"{pod.workload}: {kind} port {port} is not a declared containerPort (none mapped)")
            if "tcpSocket" in probe:
                try:
                    socket.create_connection(("127.0.0.1", run.ports[port]), timeout=timeout).close()
                except OSError as exc:
                    return False, f"dial tcp :{port}: {type(exc).__name__}"
                return True, f"tcp :{port} open"
            url = f"http://127.0.0.1:{run.ports[port]}{action.get('path', '/')}"
            try:
                response = httpx.get(url, timeout=timeout)
            except httpx.HTTPError as exc:
                return False, f"GET {action.get('path')}: {type(exc).__name__} (timeout {timeout:g} s)"
            return 200 <= response.status_code < 400, f"GET {action.get('path')}: {response.status_code}"
        raise PodError(f"{pod.workload}: probe kind {sorted(probe)} is not supported by the harness")

    # ---- starting a pod ------------------------------------------------------------------------------
    def _spawn(self, workload: Workload, ordinal: int) -> Pod:
        """One pod of a workload, named as its controller names it."""
        template = workload.doc["spec"]["template"]
        if workload.kind == "StatefulSet":
            name = f"{workload.name}-{ordinal}"
        elif workload.kind == "Deployment":  # <deployment>-<pod-template-hash>-<suffix>
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
            name = f"{workload.name}-{digest}-{uuid.uuid4().hex[:5]}"
        else:
            name = f"{workload.name}-{uuid.uuid4().hex[:5]}"
        return self._start(name, workload.key, template["spec"], template["metadata"].get("labels", {}), workload)

    def _in_order(self, workload: Workload) -> None:
        """A StatefulSet's OrderedReady: each ordinal starts once the one before it is running and ready."""
        for ordinal in range(1, workload.replicas):
            before = workload.pods[ordinal - 1]
            while not pod_ready(before):
                if self.stopped or before.finished.is_set():
                    return  # it ended without getting ready: the later ordinals wait, as on a cluster
                time.sleep(0.5)
            self._spawn(workload, ordinal)

    def _start(self, name: str, workload: str, spec: Doc, labels: dict[str, str], owner: Workload | None = None) -> Pod:
        pod = Pod(name, workload, spec, labels, self.network.pod_ip(), self.workdir / "pods" / name, owner=owner)
        with self.lock:
            self.pods[name] = pod
        if owner is not None:
            with owner.lock:
                owner.pods.append(pod)
        try:
            self._prepare(pod)
        except PodError as exc:
            for run in pod.containers:
                _remove(run)
            pod.phase, pod.reason = "Failed", str(exc)
            if owner is not None and owner.kind == "Job":  # a cluster leaves it Pending: the harness fails at once
                owner.state, owner.reason = "Failed", f"its pod cannot start: {exc}"
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
        if not self.pods:
            self.network.close()  # a kubelet that only admits leaves no service proxy behind
        return out

    def _run(self, pod: Pod) -> None:
        """The pod's life: its init containers in order, each until it exited 0, then all its containers at once,
        each kept per the restartPolicy (``_keep``), until each is done for good or the pod is deleted."""
        if all(self._keep(pod, run, init=True) for run in pod.init):
            with pod.lock:
                if not pod.deleted:
                    pod.phase = "Running"
            keepers = [
                threading.Thread(target=self._keep, args=(pod, run, False), name=f"{pod.name}/{run.name}", daemon=True)
                for run in pod.containers
            ]
            for keeper in keepers:
                keeper.start()
            for keeper in keepers:
                keeper.join()
        self._end(pod)

    def _keep(self, pod: Pod, run: ContainerRun, init: bool) -> bool:
        """Run a container and restart it as the kubelet does, per the pod's restartPolicy (Always: after any exit,
        OnFailure: after a non-zero one, Never: not; an init container is done once it exited 0), with the
        crash-loop back-off, until it is done for good or the pod is deleted. True: its last run exited 0."""
        policy = pod.spec.get("restartPolicy", "Always")
        backoff: float | None = None  # the kubelet's back-off for this container: none before its first restart
        restarted = 0.0  # when it last restarted (monotonic)
        while True:
            if not self._launch_run(pod, run, init):
                return False
            self.on_status(pod)
            _wait(run)
            run.ended.set()
            ok = run.exit_code == 0
            if pod.deleted or (ok and (init or policy != "Always")) or (not ok and policy == "Never"):
                self.on_status(pod)
                return ok
            if not ok and not self._may_retry(pod):
                return False
            first, cap = self.backoff
            if backoff is None or time.monotonic() - restarted > 2 * cap:
                backoff, delay = first, 0.0  # a first restart, or one 10 min after the last: at once
            else:
                delay, backoff = backoff, min(cap, 2 * backoff)
            run.last = terminated(run)
            if delay:
                run.waiting, run.backoff = "CrashLoopBackOff", delay
                _event(run, f"Back-off {delay:g}s restarting failed container (exit {run.exit_code})")
                self.on_status(pod)
                if pod.stopping.wait(delay):
                    return False
            run.restarts += 1
            restarted = time.monotonic()

    def _launch_run(self, pod: Pod, run: ContainerRun, init: bool) -> bool:
        """Start a run of the container, with its probers (never once the pod is deleted)."""
        with pod.lock:
            if pod.deleted:
                return False
            run.exit_code, run.reason, run.waiting = None, "", ""
            run.started, run.ended, run.ready = threading.Event(), threading.Event(), False
            if init or "startupProbe" not in run.spec:
                run.started.set()
            _launch(run)
        for kind in () if init else ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind in run.spec:
                args = (pod, run, kind, run.started, run.ended)
                prober = threading.Thread(target=self._prober, args=args, name=f"{pod.name}/{run.name}/{kind}")
                prober.daemon = True
                prober.start()
        return True

    def _may_retry(self, pod: Pod) -> bool:
        """A container failed and would restart: the Job controller counts it against the Job's backoffLimit and,
        past it, fails the Job and deletes the pod (its other containers get their grace period)."""
        job = pod.owner
        if job is None or job.kind != "Job":
            return True
        with job.lock:
            job.failures += 1
            if job.failures <= job.backoff_limit or job.state:
                return not job.state
            job.state = "Failed"
            job.reason = f"BackoffLimitExceeded: {job.failures} failed containers, backoffLimit {job.backoff_limit}"
        pod.reason = f"deleted by the Job controller: {job.reason}"
        grace = float(pod.spec.get("terminationGracePeriodSeconds", 30))
        threading.Thread(target=self.stop, args=(pod.name, grace), daemon=True).start()
        return False

    def _end(self, pod: Pod) -> None:
        """The pod's phase once each container is done for good: Succeeded if each exited 0, else Failed."""
        for run in [*pod.containers, *pod.init]:
            _remove(run)  # an engine-run container (a no-op for processes)
        failed_init = next((r for r in pod.init if r.exit_code != 0), None)
        if pod.reason:
            pass
        elif pod.deleted and (failed_init is not None or any(r.proc is None for r in pod.containers)):
            pod.reason = "deleted before all its containers started"
        elif failed_init is not None:
            pod.reason = f"Init:Error ({failed_init.name} exited {failed_init.exit_code})"
        ok = failed_init is None and all(r.exit_code == 0 for r in pod.containers)
        pod.phase = "Succeeded" if ok else "Failed"
        pod.finished.set()
        self.on_status(pod)
        job = pod.owner
        if job is None or job.kind != "Job" or self.stopped or pod.deleted or job.state:
            return
        if ok:
            job.state = "Complete"
            return
        with job.lock:  # restartPolicy Never: the Job controller counts the failed pod and replaces it
            job.failures += 1
            if job.failures > job.backoff_limit:
                job.state = "Failed"
                job.reason = f"BackoffLimitExceeded: {job.failures} failed pods, backoffLimit {job.backoff_limit}"
                return
            first, cap = self.job_backoff
            delay = min(cap, first * 2 ** (job.failures - 1))
        timer = threading.Timer(delay, self._replace, args=(job,))
        timer.daemon = True
        timer.start()

    def _replace(self, job: Workload) -> None:
        if not self.stopped and not job.state:
            self._spawn(job, 0)

    def _prober(self, pod: Pod, run: ContainerRun, kind: str, started: threading.Event, ended: threading.Event) -> None:
        """One probe of one run of a container, as the kubelet's probe worker: it ticks every ``periodSeconds`` from
        the container's start and tries the probe at each tick once ``initialDelaySeconds`` have passed (a try that
        outlasts a period delays the next tick, as a Go ticker does), each try failing at its timeout (``probe``). A
        startupProbe goes first (the others skip their ticks until it succeeded) and, as a livenessProbe, kills the
        container after ``failureThreshold`` failures in a row; a readinessProbe makes it ready after
        ``successThreshold`` successes in a row and unready after ``failureThreshold`` failures in a row. It stops
        when the run ends."""
        spec = run.spec[kind]
        delay = float(spec.get("initialDelaySeconds", 0))
        period = float(spec.get("periodSeconds", 10))
        failure_threshold = int(spec.get("failureThreshold", 3))
        success_threshold = int(spec.get("successThreshold", 1))
        launched, tick = time.monotonic(), 0
        successes = failures = 0
        name = kind.removesuffix("Probe").capitalize()
        while True:
            if ended.wait(max(0.0, launched + tick * period - time.monotonic())):
                return
            tick = max(tick + 1, int((time.monotonic() - launched) / period) + 1)  # the next; missed ones dropped
            if (kind != "startupProbe" and not started.is_set()) or time.monotonic() - launched < delay:
                continue
            began = time.monotonic()
            try:
                ok, detail = self.probe(pod, run.name, kind)
            except PodError as exc:  # e.g. its command is not in the image: the probe errs, which counts as failed
                ok, detail = False, str(exc)
            if ended.is_set() or run.ended is not ended:
                return  # the run ended meanwhile: this verdict no longer counts
            record = run.probes.setdefault(kind, ProbeRecord())  # over all runs of the container
            record.tries += 1
            record.slowest = max(record.slowest, time.monotonic() - began)
            record.last = detail
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not ok:
                record.failures += 1
                _event(run, f"{name} probe failed ({failures} of {failure_threshold}): {detail}")
            if kind == "readinessProbe":
                verdict = run.ready
                if successes >= success_threshold or failures >= failure_threshold:
                    verdict = ok
                if verdict != run.ready:
                    run.ready = verdict
                    _event(run, "ready" if verdict else f"not ready: {failures} readiness failures in a row")
                    self.on_status(pod)
            elif ok and kind == "startupProbe":
                started.set()
                self.on_status(pod)
                return
            elif failures >= failure_threshold:
                self._kill(pod, run, f"{name} probe failed {failures} times in a row", spec)
                return

    def _kill(self, pod: Pod, run: ContainerRun, why: str, probe: Doc) -> None:
        """Kill a running container as the kubelet kills one that failed its liveness or startup probe: SIGTERM,
        its grace period, SIGKILL; its keeper then restarts it per the restartPolicy."""
        grace = float(probe.get("terminationGracePeriodSeconds") or pod.spec.get("terminationGracePeriodSeconds", 30))
        policy = pod.spec.get("restartPolicy", "Always")
        _event(run, f"{why}: killed (SIGTERM, {grace:g} s grace), restartPolicy {policy}")
        _terminate(run, grace)

    def _in_engine(self, pod: Pod, engine: Engine) -> None:
        """The pod's one container, to run in its image through the engine as the container launcher runs a step
        pod: the launcher's ``container_spec`` reads the pod (refusing what it cannot honour) and ``engine_args``
        makes the engine's arguments. The kubelet's part stays the kubelet's: ``$(VAR)`` expansion, Service
        addresses routed (the pod shares the host's network), the ``envFrom`` Secret resolved."""
        if len(pod.spec["containers"]) != 1 or pod.spec.get("initContainers"):
            raise PodError(f"pod {pod.name}: the harness runs pods of built images with one container, no init")
        if pod.spec.get("restartPolicy", "Always") != "Never":  # its container and emptyDir go when it ends
            raise PodError(f"pod {pod.name}: the harness runs pods of built images with restartPolicy Never only")
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
            elif "persistentVolumeClaim" in volume:
                path = self._claim(volume["persistentVolumeClaim"]["claimName"])
            else:
                raise PodError(f"volume {volume['name']}: type {sorted(volume)} is not supported by the harness")
            out[volume["name"]] = path
        kind, _, workload = pod.workload.partition("/")
        if kind == "StatefulSet":  # its controller gives pod N the claim <template>-<set>-N of each claim template
            ordinal = re.fullmatch(rf"{re.escape(workload)}-(\d+)", pod.name)  # else the harness's one pod: 0
            owner = self.objects.find("StatefulSet", workload) or {}
            for template in owner.get("spec", {}).get("volumeClaimTemplates", []):
                claim = f"{template['metadata']['name']}-{workload}-{ordinal[1] if ordinal else 0}"
                out[template["metadata"]["name"]] = self._claim(claim)
        return out

    def _claim(self, name: str) -> Path:
        """A PersistentVolumeClaim's volume: a directory of the kubelet's own, outliving the pods that mount it."""
        path = self.workdir / "persistent-volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _container(self, pod: Pod, spec: Doc, volumes: dict[str, Path]) -> ContainerRun:
        image = self._image(spec["image"])
        root = pod.root / "fs" / spec["name"]
        mounts = {**image.baked, **self.provided, **self.credentials(pod)}
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
            p["containerPort"]: self.network.host_port(pod.name, p["containerPort"]) for p in spec.get("ports", [])
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
        run = ContainerRun(spec["name"], argv, env, cwd, log, spec, ports, root, paths)
        run.stop_signal = image.stop_signal
        return run

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
        # A listen address on a declared port (`--web.listen-address=:9102`, `0.0.0.0:9102`): its host port.
        listen = self.LISTEN.fullmatch(value)
        if listen and int(listen["port"]) in ports:
            value = f"{listen['head']}{ports[int(listen['port'])]}"
        return self.network.rewrite_services(value)

    LISTEN = re.compile(r"(?P<head>(--[\w.-]+=)?(0\.0\.0\.0|127\.0\.0\.1|localhost|\[::\])?:)(?P<port>\d+)")


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
    run.started_at, run.finished_at = _now(), ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _event(run: ContainerRun, text: str) -> None:
    run.events[:] = [*run.events[-49:], f"{_now()} {text}"]


def _exec_probe(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[bool, str]:
    """An exec probe's try: its exit status, or a failure at ``timeout`` (its process group killed then)."""
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return False, f"command timed out after {timeout:g} s: {' '.join([Path(argv[0]).name, *argv[1:]])[-160:]}"
    output = out.decode(errors="replace").strip()
    return proc.returncode == 0, f"exit {proc.returncode}: {output[-300:]}"


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """One direction of a proxied connection, until its end, which it passes on (half-close)."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


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
    run.finished_at = _now()
    run.exit_code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a container runtime says


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
    """The image's STOPSIGNAL (SIGTERM unless it says otherwise) to the container's process group, SIGKILL after the
    grace period (as the kubelet does); an engine-run container is stopped by its engine the same way."""
    proc = run.proc
    if proc is None or proc.poll() is not None:
        return
    if run.in_engine is not None:
        run.in_engine.engine.run("stop", "-t", str(round(grace)), run.in_engine.name, timeout=grace + 60)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        return
    try:
        os.killpg(proc.pid, run.stop_signal)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def to_yaml(doc: Doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
