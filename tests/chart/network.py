"""Which pod may connect to which, computed by a NetworkPolicy analyzer from rendered manifests.

network-config-analyzer (nca, pinned in the dev extra) builds the cluster's endpoints from the workloads it is
given (one pod per Deployment/StatefulSet/Job replica, at most two, labelled from the pod template, in the
workload's ``metadata.namespace`` -- ``default`` when absent, as ``helm template`` leaves it) and computes from
every NetworkPolicy the set of allowed connections: (source pod, destination pod, protocol, destination port).
A flow is allowed when its connections are contained in that set: the same computation as nca's own
connectivity-map query (``ConnectivityMapQuery.compute_connectivity_output``: ``all_allowed_conns``).

nca keeps its peers in a process-wide singleton that every new configuration resets, so ``evaluate`` answers
all the flows of one cluster at once and returns plain verdicts.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
CLUSTER_SCOPED = ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass")


@dataclass(frozen=True)
class Endpoint:
    """The pods in `namespace` carrying all of `labels`."""

    namespace: str
    labels: tuple[tuple[str, str], ...]

    @staticmethod
    def of(namespace: str, labels: dict[str, str]) -> Endpoint:
        return Endpoint(namespace, tuple(sorted(labels.items())))


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Verdict:
    allowed_all: bool  # every source pod may open this connection to every destination pod
    allowed_any: bool  # at least one source pod may open it to at least one destination pod
    sources: tuple[str, ...] = ()  # the pods nca modelled for each end, as `namespace/name`
    destinations: tuple[str, ...] = ()
    between: str = field(default="")  # everything allowed from source to destination, as nca prints it


def namespace(name: str) -> dict[str, Any]:
    # The API server labels every namespace with its name; nca adds that label itself too.
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"name": name}}}


def pod(name: str, ns: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "example.invalid/main:1"}]},
    }


def cluster(docs: list[dict[str, Any]], release_namespace: str, extra: Iterable[dict[str, Any]] = ()) -> list[dict]:
    """The render as `helm install -n <release_namespace>` would create it, plus other workloads and namespaces.

    A workload scaled to zero (a pool at rest) gets one replica: nca models no pod for `replicas: 0`, and the
    question is what such a pod may reach once it is scaled up.
    """
    out = []
    for doc in [*copy.deepcopy(docs), *copy.deepcopy(list(extra))]:
        meta = doc.setdefault("metadata", {})
        if doc["kind"] not in CLUSTER_SCOPED:
            meta.setdefault("namespace", release_namespace)
        if doc["kind"] in ("Deployment", "StatefulSet") and doc.get("spec", {}).get("replicas") == 0:
            doc["spec"]["replicas"] = 1
        out.append(doc)
    have = {d["metadata"]["name"] for d in out if d["kind"] == "Namespace"}
    needed = sorted({d["metadata"]["namespace"] for d in out if "namespace" in d["metadata"]} - have)
    return [*(namespace(n) for n in needed), *out]


def evaluate(
    manifests: list[dict[str, Any]],
    endpoints: dict[str, Endpoint],
    flows: Iterable[Flow],
    workdir: Path,
) -> dict[Flow, Verdict]:
    """nca's verdict on each flow between the named endpoints of this cluster (one analysis, offline)."""
    from nca.CoreDS.ConnectivityProperties import ConnectivityProperties
    from nca.CoreDS.Peer import BasePeerSet, PeerSet, Pod
    from nca.CoreDS.PortSet import PortSet
    from nca.CoreDS.ProtocolSet import ProtocolSet
    from nca.NetworkConfig.ResourcesHandler import ResourcesHandler
    from nca.Resources.PolicyResources.NetworkPolicy import PolicyConnectionsFilter

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))

    BasePeerSet.reset()  # as nca's own CLI does before each run
    entry = [str(path)]
    config = ResourcesHandler().get_network_config(
        np_list=entry, ns_list=entry, pod_list=list(entry), resource_list=None
    )
    allowed = config.allowed_connections(
        res_conns_filter=PolicyConnectionsFilter.only_all_allowed_connections()
    ).all_allowed_conns
    pods = [p for p in config.peer_container.get_all_peers_group() if isinstance(p, Pod)]

    def resolve(name: str) -> PeerSet:
        ep = endpoints[name]
        found = [
            p for p in pods if str(p.namespace) == ep.namespace and all(p.labels.get(k) == v for k, v in ep.labels)
        ]
        if not found:
            # A flow between pods that do not exist would pass as "denied": refuse to answer instead.
            have = sorted(f"{p.namespace}/{p.name} {dict(p.labels)}" for p in pods)
            raise LookupError(f"no pod for endpoint {name!r} ({ep}); the analyzer has: {have}")
        return PeerSet(set(found))

    verdicts = {}
    for flow in flows:
        src, dst = resolve(flow.src), resolve(flow.dst)
        ports = PortSet()
        ports.add_port(flow.port)
        wanted = ConnectivityProperties.make_conn_props_from_dict(
            {
                "src_peers": src,
                "dst_peers": dst,
                "protocols": ProtocolSet.get_protocol_set_with_single_protocol(flow.protocol),
                "dst_ports": ports,
            }
        )
        between = allowed & ConnectivityProperties.make_conn_props_from_dict({"src_peers": src, "dst_peers": dst})
        verdicts[flow] = Verdict(
            allowed_all=wanted.contained_in(allowed),
            allowed_any=bool(wanted & allowed),
            sources=tuple(sorted(p.full_name() for p in src)),
            destinations=tuple(sorted(p.full_name() for p in dst)),
            between=str(between) if between else "nothing",
        )
    return verdicts


def cli_connections(path: Path) -> dict[tuple[str, str], list[str]]:
    """nca's own connectivity map of the cluster in `path`, from its command line: pod pair -> connection sets."""
    where = ["--connectivity", str(path), "--pod_list", str(path), "--ns_list", str(path)]
    proc = subprocess.run(
        [sys.executable, "-m", "nca", *where, "--output_format", "txt_no_fw_rules", "--output_endpoints", "pods"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pairs: dict[tuple[str, str], list[str]] = {}
    for line in proc.stdout.splitlines():
        match = re.fullmatch(r"(\S+) => (\S+) : (.+)", line.strip())
        if match:
            pairs.setdefault((match[1], match[2]), []).append(match[3])
    return pairs


def cli_allows(connections: list[str], protocol: str, port: int) -> bool:
    """Whether one of nca's printed connection sets (`All connections`, `{protocols:TCP,dst_ports:80,443-445}`)
    holds this protocol and port."""
    for text in connections:
        if text == "All connections":
            return True
        for cube in re.findall(r"\{([^}]*)\}", text):
            fields: dict[str, list[str]] = {}
            key = None
            for token in cube.split(","):
                if ":" in token:
                    key, token = token.split(":", 1)
                if key is None:
                    raise ValueError(f"cannot read nca's connection set {text!r}")
                fields.setdefault(key, []).append(token)
            if set(fields) - {"protocols", "dst_ports", "hosts"}:
                raise ValueError(f"cannot read nca's connection set {text!r}")
            if protocol not in fields.get("protocols", [protocol]):
                continue
            ranges = [
                tuple(map(int, r.split("-"))) if "-" in r else (int(r), int(r)) for r in fields.get("dst_ports", [])
            ]
            if not ranges or any(lo <= port <= hi for lo, hi in ranges):
                return True
    return False
