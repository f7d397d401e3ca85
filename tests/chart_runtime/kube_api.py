"""A stand-in for the Kubernetes API server (none can run here), for the pods Airflow creates at run time.

The chart's KubernetesExecutor (tasks on the kubernetes queue) and the kubernetes launcher (ML steps as pods)
create, watch, read, label and delete pods through the cncf.kubernetes provider. This server keeps those
pods and hands each new one to the test's kubelet (``tests.chart_runtime.kubelet``), which runs it (as local
processes; a step pod in the built step image, through the container engine) and reports its phase back;
watchers get ADDED/MODIFIED/DELETED events as a real API server sends them. Discovery, the version and an
empty event list are answered too; anything else is a 404 naming the path.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

POD_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?(?P<log>/log)?$")
EVENTS_PATH = re.compile(r"^/api/v1/(?:namespaces/[^/]+/)?events$")
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "namespaced": True, "kind": "Pod", "verbs": ["create", "delete", "get", "list", "patch"]},
            {"name": "pods/log", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
            {"name": "events", "namespaced": True, "kind": "Event", "verbs": ["list"]},
        ],
    },
    "/version": {"major": "1", "minor": "35", "gitVersion": "v1.35.0-sluice-stand-in"},
}
WATCH_SECONDS = 30.0


def selector_matches(labels: dict[str, str], selector: str) -> bool:
    """A label selector's equality, inequality and existence terms (what the provider sends)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif (term.lstrip("!") in labels) == term.startswith("!"):
            return False
    return True


def fields_match(pod: dict[str, Any], selector: str) -> bool:
    values = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "status.phase": pod.get("status", {}).get("phase", ""),
    }
    return selector_matches(values, selector)


class KubeApi(ThreadingHTTPServer):
    """Pods in memory; ``on_create(pod)`` starts a new pod, ``on_delete(name)`` stops one; ``logs(name, follow)``
    yields a pod's log. The kubelet calls ``set_status`` as its processes start and end."""

    daemon_threads = True

    def __init__(
        self,
        on_create: Callable[[dict[str, Any]], None],
        on_delete: Callable[[str], None],
        logs: Callable[[str, bool], Iterator[bytes]],
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.on_create, self.on_delete, self.logs = on_create, on_delete, logs
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []  # (resourceVersion, type, pod)
        self.version = 1
        self.changed = threading.Condition()
        self.unknown: list[str] = []
        self.created: list[dict[str, Any]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in", "namespace": namespace}}
            ],
        }
        path.write_text(json.dumps(config))
        return path

    # ---- the store -------------------------------------------------------------------------------
    def _record(self, kind: str, pod: dict[str, Any]) -> None:
        """Under ``changed``: bump the resourceVersion, keep the event, wake the watchers."""
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, kind, copy.deepcopy(pod)))
        self.changed.notify_all()

    def create(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        meta = pod.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.update({"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": _now()})
        meta.setdefault("labels", {})
        pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
        with self.changed:
            if meta["name"] in self.pods:
                raise KeyError(meta["name"])
            self.pods[meta["name"]] = pod
            self.created.append(copy.deepcopy(pod))
            self._record("ADDED", pod)
        self.on_create(copy.deepcopy(pod))
        return pod

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        with self.changed:
            pod = self.pods.get(name)
            if pod is not None:
                pod["status"] = status
                self._record("MODIFIED", pod)

    def delete(self, name: str) -> dict[str, Any] | None:
        with self.changed:
            pod = self.pods.pop(name, None)
            if pod is not None:
                self._record("DELETED", pod)
        if pod is not None:
            self.on_delete(name)
        return pod

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        with self.changed:
            pod = self.pods.get(name)
            if pod is None:
                return None
            for key in ("labels", "annotations"):
                pod["metadata"].setdefault(key, {}).update(body.get("metadata", {}).get(key) or {})
            self._record("MODIFIED", pod)
            return copy.deepcopy(pod)

    def listing(self, namespace: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        labels, fields = query.get("labelSelector", [""])[0], query.get("fieldSelector", [""])[0]
        with self.changed:
            return [
                copy.deepcopy(p)
                for p in self.pods.values()
                if p["metadata"]["namespace"] == namespace
                and selector_matches(p["metadata"]["labels"], labels)
                and fields_match(p, fields)
            ]

    def _newer_than(self, version: int) -> bool:
        return self.version > version

    def watch(self, namespace: str, query: dict[str, list[str]]) -> Iterator[bytes]:
        """Events after ``resourceVersion`` (or the current pods as ADDED, then events) until the timeout."""
        labels, fields = query.get("labelSelector", [""])[0], query.get("fieldSelector", [""])[0]
        timeout = min(float(query.get("timeoutSeconds", [WATCH_SECONDS])[0] or WATCH_SECONDS), WATCH_SECONDS)
        deadline = time.monotonic() + timeout
        since = query.get("resourceVersion", [""])[0]
        with self.changed:
            if since and since != "0":
                seen = int(since)
                backlog = [(v, k, p) for v, k, p in self.events if v > seen]
            else:
                seen = self.version
                backlog = [(seen, "ADDED", copy.deepcopy(p)) for p in self.pods.values()]
        while True:
            for version, kind, pod in backlog:
                seen = max(seen, version)
                if (
                    pod["metadata"]["namespace"] == namespace
                    and selector_matches(pod["metadata"]["labels"], labels)
                    and fields_match(pod, fields)
                ):
                    yield json.dumps({"type": kind, "object": pod}).encode() + b"\n"
            with self.changed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.changed.wait_for(functools.partial(self._newer_than, seen), timeout=remaining)
                backlog = [(v, k, p) for v, k, p in self.events if v > seen]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Handler(BaseHTTPRequestHandler):
    server: KubeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chunks: Iterator[bytes], content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped watching

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _not_found(self, what: str) -> None:
        self._send(404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound", "message": what})

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if method == "GET" and url.path in DISCOVERY:
            return self._send(200, DISCOVERY[url.path])
        if EVENTS_PATH.match(url.path):
            return self._send(200, {"apiVersion": "v1", "kind": "EventList", "items": [], "metadata": {}})
        match = POD_PATH.match(url.path)
        if not match:
            self.server.unknown.append(f"{method} {url.path}")
            return self._not_found(f"the API stand-in has no {method} {url.path}")
        namespace, name = match["ns"], match["name"]
        if method == "POST" and name is None:
            try:
                return self._send(201, self.server.create(namespace, self._body()))
            except KeyError as exc:
                return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists", "message": str(exc)})
        if name is None:
            if query.get("watch", ["false"])[0] in ("true", "1"):
                return self._stream(self.server.watch(namespace, query), "application/json")
            items = self.server.listing(namespace, query)
            listing = {"apiVersion": "v1", "kind": "PodList", "items": items}
            return self._send(200, {**listing, "metadata": {"resourceVersion": str(self.server.version)}})
        if match["log"]:
            if name not in self.server.pods:
                return self._not_found(f"pod {name} not found")
            follow = query.get("follow", ["false"])[0] in ("true", "1")
            return self._stream(self.server.logs(name, follow), "text/plain")
        if method == "DELETE":
            pod = self.server.delete(name)
            return self._send(200, pod) if pod else self._not_found(f"pod {name} not found")
        if method == "PATCH":
            pod = self.server.patch(name, self._body())
            return self._send(200, pod) if pod else self._not_found(f"pod {name} not found")
        with self.server.changed:
            pod = copy.deepcopy(self.server.pods.get(name))
        return self._send(200, pod) if pod else self._not_found(f"pod {name} not found")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")
