"""A mock of the Kubernetes API server (none can run here: no cluster), for the pods Airflow creates at run time.
The one fake API of the tests: the chart runtime (tests/chart_runtime) and the kubernetes launcher's tests
(tests/launchers) both use it, and each test that does says it talks to a mock of the Kubernetes API.

The chart's KubernetesExecutor (tasks on the kubernetes queue) and the kubernetes launcher (ML steps as pods)
create, watch, read, label and delete pods through the cncf.kubernetes provider; the api-server reads a running
KubernetesExecutor task's log. This server keeps those pods and hands each new one to the test's kubelet
(``on_create``: the chart runtime's ``tests.chart_runtime.kubelet`` runs it as local processes or in the built step
image; the launcher tests' ``tests.launchers.scripted_kubelet`` gives it the status its scenario names), which
reports its phase back (``set_status``); watchers get ADDED/MODIFIED/DELETED events as a real API server sends
them. Discovery, the version and an empty event list are answered too; anything else is a 404 naming the path.
Every request is recorded (``requests``, ``calls(method)``), and an exception in this server is kept in ``errors``
(a bug here shows in the test's output, not as a dropped connection).

Every request is authenticated and authorized as a real API server with RBAC does it:
- a pod gets credentials only as the kubelet mounts a ServiceAccount token: ``credentials`` gives a pod a
  kubeconfig whose bearer token is bound to its own ServiceAccount (``spec.serviceAccountName``), and nothing when
  ``automountServiceAccountToken`` is false on the pod spec or, unset there, on the ServiceAccount (a pod of a
  ServiceAccount that does not exist is refused, as the ServiceAccount admission plugin refuses it). A token's
  user is ``system:serviceaccount:<namespace>:<name>`` in the groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<namespace>`` and ``system:authenticated``; no token is ``system:anonymous``; a token
  this server did not issue, or whose ServiceAccount is gone, is 401;
- the request's verb (get/list/watch/create/update/patch/delete/deletecollection, from the HTTP method as
  Kubernetes maps it), resource, subresource, name and namespace are checked against the Roles, ClusterRoles,
  RoleBindings and ClusterRoleBindings of the install's ``Objects``, read at each request (editing a Role there
  takes effect at once, as ``kubectl apply`` of a Role does); a refusal is a 403 with the Status body a real
  server sends (``pods is forbidden: User "system:serviceaccount:ml:sluice-worker" cannot create resource "pods"
  in API group "" in the namespace "ml"``);
- discovery (``/api``, ``/apis``, ``/api/v1``) is open to every authenticated user (``system:discovery``) and
  ``/version`` to everyone (``system:public-info-viewer``); ``system:masters`` (the harness's own admin, as
  ``kubectl`` with a cluster-admin kubeconfig) passes every check.
Every 401 and 403 is kept in ``refused`` (or, inside ``expect_refusals()``, in the list that block gets), so a
test can prove a legitimate install never hit one.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import re
import secrets
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
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
            {
                "name": "pods",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["create", "delete", "get", "list", "patch", "watch"],
            },
            {"name": "pods/log", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
            {"name": "events", "namespaced": True, "kind": "Event", "verbs": ["list", "watch"]},
        ],
    },
    "/version": {"major": "1", "minor": "35", "gitVersion": "v1.35.0-sluice-stand-in"},
}
WATCH_SECONDS = 30.0


class Objects(Protocol):
    """The install's objects the server authorizes by (ServiceAccounts, Roles, RoleBindings and their cluster-wide
    kinds), read at each request: the chart runtime's ``Objects``, or ``Manifests`` over a list."""

    def of_kind(self, kind: str) -> list[dict[str, Any]]: ...


class Manifests:
    """``Objects`` over a list of manifests (edit the list, or a manifest in it, as ``kubectl apply`` would)."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]


class ServiceAccountMissing(LookupError):
    """A pod names a ServiceAccount the install does not hold (what the kubelet reports as FailedCreate)."""


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


# ---- authentication and authorization ---------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Who a request is, as the authenticator says: a user name and its groups."""

    user: str
    groups: tuple[str, ...]


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))
ADMIN = Identity("kubernetes-admin", ("system:masters", "system:authenticated"))
# system:discovery and system:public-info-viewer, the bootstrap ClusterRoles every cluster binds.
DISCOVERY_PATHS = {"/api", "/api/v1", "/apis", "/version"}
PUBLIC_PATHS = {"/version"}


def service_account_identity(namespace: str, name: str) -> Identity:
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")
    return Identity(f"system:serviceaccount:{namespace}:{name}", groups)


@dataclass(frozen=True)
class Request:
    """What the authorizer decides on (Kubernetes' ``authorizer.Attributes``, from its ``RequestInfoFactory``)."""

    verb: str
    path: str
    resource: str = ""  # empty: a non-resource request (discovery, /version, an unknown path)
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    group: str = ""

    @property
    def qualified(self) -> str:
        """The resource as a 403's message names it (``pods``, ``pods/log``)."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True)
class Refusal:
    """A 401 or 403 this server answered: who, what, and the Status message it sent."""

    user: str
    code: int
    verb: str
    path: str
    message: str


def request_info(method: str, path: str, query: dict[str, list[str]]) -> Request:
    """A request's verb and resource as Kubernetes' RequestInfoFactory derives them: GET of a collection is list
    (watch with ``watch=true``), of an object get; POST create; PUT update; PATCH patch; DELETE of an object
    delete, of a collection deletecollection. A list or watch narrowed by ``fieldSelector=metadata.name=<n>``
    is about that name."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        rest = []
    if not rest:
        return Request("get" if method in ("GET", "HEAD") else method.lower(), path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
    resource, name, subresource = rest[0], (rest[1:2] or [""])[0], "/".join(rest[2:])
    watch = query.get("watch", ["false"])[0] in ("true", "1")
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else "get" if name else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
        if method == "DELETE":
            verb = "delete" if name else "deletecollection"
    if not name and verb in ("list", "watch"):
        selector = query.get("fieldSelector", [""])[0]
        names = [t.split("=", 1)[1] for t in selector.split(",") if t.startswith("metadata.name=")]
        name = names[0] if len(names) == 1 else ""
    return Request(verb or method.lower(), path, resource, subresource, name, namespace, group)


def _rule_matches(rule: dict[str, Any], request: Request) -> bool:
    """One PolicyRule against a request, as Kubernetes' rbac/validation matches them."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and request.verb not in verbs:
        return False
    if not request.resource:
        urls = rule.get("nonResourceURLs") or []
        return any(u == request.path or u == "*" or (u.endswith("*") and request.path.startswith(u[:-1])) for u in urls)
    groups = rule.get("apiGroups") or []
    if "*" not in groups and request.group not in groups:
        return False
    resources = rule.get("resources") or []
    if not (
        "*" in resources
        or request.qualified in resources
        or (request.subresource and f"*/{request.subresource}" in resources)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or request.name in names


class Rbac:
    """The RBAC authorizer over an install's objects: Roles and RoleBindings in their namespace (the release
    namespace where a rendered object names none, as ``helm install -n`` puts it there), ClusterRoles and
    ClusterRoleBindings cluster-wide. Read at every call: an edited Role counts at once."""

    def __init__(self, objects: Objects, namespace: str) -> None:
        self.objects, self.namespace = objects, namespace

    def namespace_of(self, doc: dict[str, Any]) -> str:
        return str(doc["metadata"].get("namespace") or self.namespace)

    def _bound(self, identity: Identity, binding: dict[str, Any]) -> bool:
        for subject in binding.get("subjects") or []:
            kind, name = subject.get("kind"), subject.get("name")
            if kind == "ServiceAccount":
                namespace = subject.get("namespace") or self.namespace_of(binding)
                if identity.user == f"system:serviceaccount:{namespace}:{name}":
                    return True
            elif (kind == "User" and identity.user == name) or (kind == "Group" and name in identity.groups):
                return True
        return False

    def _rules(self, ref: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        kind, name = ref.get("kind"), ref.get("name")
        for doc in self.objects.of_kind(str(kind)):
            if doc["metadata"]["name"] == name and (kind == "ClusterRole" or self.namespace_of(doc) == namespace):
                return list(doc.get("rules") or [])
        return []  # a binding to a role that does not exist grants nothing

    def rules(self, identity: Identity, namespace: str) -> list[dict[str, Any]]:
        """Every rule that applies to ``identity`` in ``namespace`` (cluster-wide ones for namespace "")."""
        found: list[dict[str, Any]] = []
        for binding in self.objects.of_kind("ClusterRoleBinding"):
            if self._bound(identity, binding):
                found += self._rules(binding.get("roleRef") or {}, "")
        if namespace:
            for binding in self.objects.of_kind("RoleBinding"):
                if self.namespace_of(binding) == namespace and self._bound(identity, binding):
                    found += self._rules(binding.get("roleRef") or {}, namespace)
        return found

    def allows(self, identity: Identity, request: Request) -> bool:
        if "system:masters" in identity.groups:
            return True
        if not request.resource and request.verb == "get":
            if request.path in PUBLIC_PATHS:
                return True
            if request.path in DISCOVERY_PATHS and "system:authenticated" in identity.groups:
                return True
        return any(_rule_matches(rule, request) for rule in self.rules(identity, request.namespace))


def forbidden(identity: Identity, request: Request) -> dict[str, Any]:
    """The 403 Status a real API server sends (its ``forbiddenMessage`` and ``NewForbidden``)."""
    if not request.resource:
        reason = f'User "{identity.user}" cannot {request.verb} path "{request.path}"'
        return _status(403, "Forbidden", f"forbidden: {reason}", {})
    where = f'in the namespace "{request.namespace}"' if request.namespace else "at the cluster scope"
    reason = (
        f'User "{identity.user}" cannot {request.verb} resource "{request.qualified}" in API group '
        f'"{request.group}" {where}'
    )
    what = f'{request.resource} "{request.name}"' if request.name else request.resource
    details = {"name": request.name, "kind": request.resource} if request.name else {"kind": request.resource}
    return _status(403, "Forbidden", f"{what} is forbidden: {reason}", details)


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    return {**status, "reason": reason, **({"details": details} if details is not None else {}), "code": code}


class KubeApi(ThreadingHTTPServer):
    """Pods in memory; ``on_create(pod)`` starts a new pod, ``on_delete(name)`` stops one; ``logs(name, follow)``
    yields a pod's log. The kubelet calls ``set_status`` as its processes start and end, and ``credentials`` to
    mount a pod's ServiceAccount token. ``objects`` are the install's (its ServiceAccounts and RBAC), objects
    without a namespace being in ``namespace``."""

    daemon_threads = True

    def __init__(
        self,
        on_create: Callable[[dict[str, Any]], None],
        on_delete: Callable[[str], None],
        logs: Callable[[str, bool], Iterator[bytes]],
        *,
        objects: Objects,
        namespace: str,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.on_create, self.on_delete, self.logs = on_create, on_delete, logs
        self.objects, self.namespace = objects, namespace
        self.rbac = Rbac(objects, namespace)
        self.pods: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []  # (resourceVersion, type, pod)
        self.version = 1
        self.changed = threading.Condition()
        self.unknown: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.tokens: dict[str, tuple[str, str]] = {}  # bearer token -> (namespace, ServiceAccount)
        self.admin_token = f"stand-in-admin.{secrets.token_hex(16)}"
        self.refused: list[Refusal] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.errors: list[str] = []  # tracebacks of this server's own failures
        self.authorized: Counter[str] = Counter()  # user -> requests let through
        self._expected: list[list[Refusal]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def calls(self, method: str) -> list[str]:
        """The paths of the requests made with ``method``, in order."""
        with self.changed:
            return [path for m, path in self.requests if m == method]

    def clear(self) -> None:
        """Forget every pod and request (a module-scoped server between tests); its objects and tokens stay."""
        with self.changed:
            self.pods.clear()
            self.created.clear()
            self.requests.clear()
            self.refused.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """What the harness itself sends (``kubectl`` with a cluster-admin kubeconfig: ``system:masters``)."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def kubeconfig(self, path: Path, namespace: str, token: str | None = None) -> Path:
        """A kubeconfig for this server: with ``token`` (else the admin's)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "stand-in", "user": {"token": token or self.admin_token}}],
            "contexts": [
                {"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in", "namespace": namespace}}
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        return path

    # ---- identities ------------------------------------------------------------------------------
    def service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceAccount, as the install holds it; every namespace has ``default`` (it mounts a token)."""
        found = next(
            (
                d
                for d in self.objects.of_kind("ServiceAccount")
                if d["metadata"]["name"] == name and self.rbac.namespace_of(d) == namespace
            ),
            None,
        )
        if found is None and name == "default":
            return {"metadata": {"name": "default", "namespace": namespace}}
        return found

    def token_for(self, namespace: str, name: str) -> str:
        """A token bound to that ServiceAccount (what the kubelet's TokenRequest gets)."""
        token = f"stand-in-sa.{secrets.token_hex(16)}"
        self.tokens[token] = (namespace, name)
        return token

    def credentials(self, namespace: str, spec: dict[str, Any], directory: Path, mount_path: str) -> dict[str, Path]:
        """What the kubelet mounts for a pod's ServiceAccount, as ``{container path: host file}``: a kubeconfig with a
        token bound to ``spec.serviceAccountName`` (the harness's in-cluster credentials), or nothing when
        ``automountServiceAccountToken`` is false on the pod spec or, unset there, on the ServiceAccount. One file
        per pod (``directory``), written once. A ServiceAccount that does not exist: the pod is refused."""
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        account = self.service_account(namespace, name)
        if account is None:
            raise ServiceAccountMissing(
                f'FailedCreate: error looking up service account {namespace}/{name}: serviceaccount "{name}" not found'
            )
        automount = spec.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True))
        if automount is False:
            return {}
        path = directory / "serviceaccount" / "kubeconfig"
        if not path.exists():
            self.kubeconfig(path, namespace, self.token_for(namespace, name))
        return {mount_path: path}

    def authenticate(self, authorization: str | None) -> Identity | None:
        """The request's user: its bearer token's, ``system:anonymous`` without one, None (401) for a token this
        server did not issue or whose ServiceAccount no longer exists."""
        if not authorization:
            return ANONYMOUS
        token = authorization.removeprefix("Bearer ").strip()
        if token == self.admin_token:
            return ADMIN
        bound = self.tokens.get(token)
        if bound is None or self.service_account(*bound) is None:
            return None
        return service_account_identity(*bound)

    def refuse(self, refusal: Refusal) -> None:
        with self.changed:
            (self._expected[-1] if self._expected else self.refused).append(refusal)

    @contextlib.contextmanager
    def expect_refusals(self) -> Iterator[list[Refusal]]:
        """Refusals while the block runs go to the list it yields, not to ``refused`` (a test that breaks the
        install's rights on purpose)."""
        mine: list[Refusal] = []
        with self.changed:
            self._expected.append(mine)
        try:
            yield mine
        finally:
            with self.changed:
                self._expected.remove(mine)

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
        self._send(404, _status(404, "NotFound", what))

    def _authorized(self, method: str, path: str, query: dict[str, list[str]]) -> Identity | None:
        """Authenticate and authorize the request: its user, or None once 401 or 403 is answered (and kept)."""
        api = self.server
        request = request_info(method, path, query)
        identity = api.authenticate(self.headers.get("Authorization"))
        if identity is None:
            api.refuse(Refusal("(invalid token)", 401, request.verb, f"{method} {path}", "Unauthorized"))
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return None
        if not api.rbac.allows(identity, request):
            status = forbidden(identity, request)
            api.refuse(Refusal(identity.user, 403, request.verb, f"{method} {path}", status["message"]))
            self._send(403, status)
            return None
        with api.changed:
            api.authorized[identity.user] += 1
        return identity

    def _admitted(self, identity: Identity, namespace: str, pod: dict[str, Any]) -> bool:
        """The ServiceAccount admission plugin: a pod naming a ServiceAccount that does not exist is refused."""
        spec = pod.get("spec") or {}
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if self.server.service_account(namespace, name) is not None:
            return True
        pod_name = (pod.get("metadata") or {}).get("name", "")
        message = (
            f'pods "{pod_name}" is forbidden: error looking up service account {namespace}/{name}: '
            f'serviceaccount "{name}" not found'
        )
        self.server.refuse(Refusal(identity.user, 403, "create", f"POST {self.path}", message))
        self._send(403, _status(403, "Forbidden", message, {"name": pod_name, "kind": "pods"}))
        return False

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        with self.server.changed:
            self.server.requests.append((method, url.path))
        body = self._body()  # read before any answer: the connection is kept alive for the next request
        identity = self._authorized(method, url.path, query)
        if identity is None:
            return None
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
            if not self._admitted(identity, namespace, body):
                return None
            try:
                return self._send(201, self.server.create(namespace, body))
            except KeyError as exc:
                return self._send(409, _status(409, "AlreadyExists", f'pods "{exc.args[0]}" already exists'))
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
            pod = self.server.patch(name, body)
            return self._send(200, pod) if pod else self._not_found(f"pod {name} not found")
        with self.server.changed:
            pod = copy.deepcopy(self.server.pods.get(name))
        return self._send(200, pod) if pod else self._not_found(f"pod {name} not found")

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except Exception as exc:  # a bug here must show up in the test output, not as a dropped connection
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
