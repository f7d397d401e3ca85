"""A stand-in for the Kubernetes API server (none can run here): just enough of /api/v1 for the
provider's pod machinery — create/read/list/patch/delete pods, pod logs, events. Each pod's behaviour is
chosen by the test (``scenario``). Every request is recorded so tests can assert what was sent."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

POD_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?(?P<log>/log)?$")
EVENTS_PATH = re.compile(r"^/api/v1/namespaces/[^/]+/events$")


def status_for(scenario: str) -> dict[str, Any]:
    if scenario == "unschedulable":
        return {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        }
    if scenario == "image-pull":
        return {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "base",
                    "image": "reg/ml-steps:9.9",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "reg/ml-steps:9.9"',
                        }
                    },
                }
            ],
        }
    if scenario == "running":
        return {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "base",
                    "image": "i",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-11-25T00:00:00Z"}},
                }
            ],
        }
    exit_code = 0 if scenario == "succeeded" else 3
    return {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {
                "name": "base",
                "image": "i",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Completed"}},
            }
        ],
    }


class KubeStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.pods: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.running_reads: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def add_pod(self, name: str, labels: dict[str, str], namespace: str = "ml", running_reads: int = 0) -> None:
        """``running_reads``: how many reads report the pod Running before the scenario's status applies
        (a pod that a lost worker left running and that finishes while the retry watches it)."""
        self.running_reads[name] = running_reads
        self.pods[name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "uid": name},
            "spec": {"containers": [{"name": "base", "image": "i"}]},
        }

    def calls(self, method: str) -> list[str]:
        return [path for m, path in self.requests if m == method]

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "stub",
                    "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{self.server_port}"}}],
                    "users": [{"name": "stub", "user": {"token": "stub"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "ml"}}],
                }
            )
        )
        return path


def _act_as_kubelet(pod: dict[str, Any]) -> None:
    """Run the step's side of the contract for a local artifact root, as the step container would."""
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    outputs = json.loads(env["SLUICE_STEP_OUTPUTS"])
    for uri in outputs.values():
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_text("made in a pod")
    result = {
        "contract_version": 1,
        "step": "stub",
        "status": "succeeded",
        "outputs": outputs,
        "metrics": {"ran_in": "pod"},
    }
    Path(env["SLUICE_RESULT_URI"]).parent.mkdir(parents=True, exist_ok=True)
    Path(env["SLUICE_RESULT_URI"]).write_text(json.dumps(result))


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "=" not in term:
            present = term.lstrip("!") in labels
            if present == term.startswith("!"):
                return False
        elif "!=" in term:
            key, value = term.split("!=")
            if labels.get(key) == value:
                return False
        else:
            key, value = term.split("=")
            if labels.get(key) != value:
                return False
    return True


class _Handler(BaseHTTPRequestHandler):
    server: KubeStub

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _pod(self, name: str) -> dict[str, Any] | None:
        pod = self.server.pods.get(name)
        if not pod:
            return None
        scenario = self.server.scenario
        if self.server.running_reads.get(name, 0) > 0:
            self.server.running_reads[name] -= 1
            scenario = "running"
        return {**pod, "status": status_for(scenario)}

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        self.server.requests.append((method, url.path))
        if EVENTS_PATH.match(url.path):
            return self._send(200, {"apiVersion": "v1", "kind": "EventList", "items": [], "metadata": {}})
        match = POD_PATH.match(url.path)
        if not match:
            return self._send(404, {"kind": "Status", "code": 404, "message": f"stub has no {url.path}"})
        name, query = match["name"], parse_qs(url.query)
        with self.server.lock:
            if method == "POST":
                body = self._body()
                if self.server.scenario == "forbidden":  # RBAC refuses the account pod creation
                    message = (
                        'pods is forbidden: User "system:serviceaccount:ml:sluice-worker" cannot create resource '
                        '"pods" in API group "" in the namespace "ml"'
                    )
                    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
                    return self._send(403, {**status, "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
                self.server.created.append(body)
                self.server.add_pod(body["metadata"]["name"], body["metadata"].get("labels", {}), match["ns"])
                if self.server.scenario == "succeeded":
                    _act_as_kubelet(body)
                return self._send(201, self._pod(body["metadata"]["name"]))
            if name is None:
                selector = query.get("labelSelector", [""])[0]
                items = [
                    self._pod(n) for n, p in self.server.pods.items() if _matches(p["metadata"]["labels"], selector)
                ]
                return self._send(200, {"apiVersion": "v1", "kind": "PodList", "items": items, "metadata": {}})
            if match["log"]:
                return self._send(200, b"step says hello\n", "text/plain")
            if method == "DELETE":
                self.server.pods.pop(name, None)
                return self._send(200, {"kind": "Status", "status": "Success"})
            if method == "PATCH":
                pod = self.server.pods.get(name)
                if pod:
                    pod["metadata"]["labels"].update(self._body().get("metadata", {}).get("labels", {}))
            pod = self._pod(name)
            if pod is None:
                return self._send(
                    404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": f"pod {name} gone"}
                )
            return self._send(200, pod)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except Exception as exc:  # a stub bug must show up in the test output, not as a dropped connection
            import traceback

            self.server.errors.append("".join(traceback.format_exception(exc)))
            raise

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")
