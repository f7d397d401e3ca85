"""A Kubernetes API stand-in for the chart's `lookup`, so that an upgrade can be rendered without a cluster.

`helm template --dry-run=server` runs the chart's `lookup` calls against the API server of its kubeconfig (plain
`helm template` has none, and every lookup returns nothing: what Argo CD sees). This server answers what helm asks
there: discovery of the kinds the render holds (helm maps each rendered object to its resource before it prints
it) and GETs of the objects a test stored (Secrets; a Deployment a user scaled), as a real API server would after an
install; any other object is a 404. So a test renders an install with `render_chart`, stores the objects it wants the
cluster to hold (as rendered, or changed as a user would change them), and renders the upgrade with `api.render(...)`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.chart.render import render_chart


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith("s") else "s")


class LookupApi(ThreadingHTTPServer):
    """Discovery for `kinds` ((apiVersion, kind) pairs) and GET of the stored objects."""

    daemon_threads = True

    def __init__(self, kinds: Iterable[tuple[str, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.groups: dict[str, list[dict[str, Any]]] = {}
        for api_version, kind in {*kinds, ("v1", "Secret")}:
            resource = {"name": _plural(kind), "singularName": kind.lower(), "namespaced": True, "kind": kind}
            self.groups.setdefault(api_version, []).append({**resource, "verbs": ["get", "list"]})
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # (apiVersion, plural, namespace, name)
        self.unknown: list[str] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @classmethod
    def for_render(cls, docs: list[dict[str, Any]]) -> LookupApi:
        return cls((d["apiVersion"], d["kind"]) for d in docs)

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        super().__exit__(*exc)

    def store(self, obj: dict[str, Any], namespace: str = "ml") -> None:
        """Keep `obj` (a Secret, or any kind the render holds) as the cluster would: in its namespace, with a uid."""
        kept = json.loads(json.dumps(obj))
        meta = kept.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        if kept.get("kind", "Secret") == "Secret":
            self.secrets[(meta["namespace"], meta["name"])] = kept
        else:
            self.objects[(kept["apiVersion"], _plural(kept["kind"]), meta["namespace"], meta["name"])] = kept

    def kubeconfig(self, path: Path) -> Path:
        server = f"http://127.0.0.1:{self.server_port}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
            "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}],
        }
        path.write_text(json.dumps(config))
        return path

    def render(self, tmp_path: Path, values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """`helm template --is-upgrade` with the chart's lookups answered by this server."""
        return render_chart(values, kubeconfig=self.kubeconfig(tmp_path / "kubeconfig"), upgrade=True, **kwargs)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if path == "/version":
            return 200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0-lookup-stand-in"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = {}
            for api_version in self.groups:
                if "/" in api_version:
                    group, version = api_version.split("/")
                    entry = {"groupVersion": api_version, "version": version}
                    groups.setdefault(group, {"name": group, "versions": [], "preferredVersion": entry})
                    groups[group]["versions"].append(entry)
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(groups.values())}
        if path == "/api/v1" or (parts[0] == "apis" and len(parts) == 3):
            api_version = "/".join(parts[1:]) if parts[0] == "apis" else "v1"
            if api_version in self.groups:
                resources = self.groups[api_version]
                return 200, {"kind": "APIResourceList", "groupVersion": api_version, "resources": resources}
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "secrets":
            secret = self.secrets.get((parts[3], parts[5]))
            if secret is not None:
                return 200, secret
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        if parts[0] == "apis" and len(parts) == 7 and parts[3] == "namespaces":
            found = self.objects.get((f"{parts[1]}/{parts[2]}", parts[5], parts[4], parts[6]))
            if found is not None:
                return 200, found
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
        self.unknown.append(path)
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": f"no {path} here"}


class _Handler(BaseHTTPRequestHandler):
    server: LookupApi

    def do_GET(self) -> None:
        status, body = self.server.answer(self.path.split("?", 1)[0])
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass
