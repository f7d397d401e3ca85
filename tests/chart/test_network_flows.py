"""NetworkPolicy reachability of each shipped values set, decided by an analyzer (network-config-analyzer) from the
rendered manifests: every flow the platform needs is allowed, every flow it must not have is denied.

Each render is installed, as the analyzer sees it, into namespace `ml` of a cluster that also runs: the KEDA
operator in `keda` (labelled as the KEDA Helm chart labels it), an ingress controller in `ingress-nginx`,
Prometheus in `monitoring`, a Sluice step pod labelled by the kubernetes launcher itself, a KubernetesExecutor
task pod from the chart's own pod template, and two pods in namespace `other`, one of them wearing the release's
labels. Each values set is rendered and analysed once; each row of the flow table is one case.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.network import Endpoint, Flow, Verdict, cli_allows, cli_connections, cluster, evaluate, pod
from tests.chart.render import CHART, REPO, render_chart

NS = "ml"
RELEASE = "sluice"  # render_chart's release name
RENDERS: dict[str, list[Path]] = {
    "defaults": [],
    "values-dev": [REPO / "deploy" / "values-dev.yaml"],
    "values-prod": [REPO / "deploy" / "values-prod.yaml"],
}
# The KEDA Helm chart's operator pod labels (kedacore/charts keda/templates/manager/deployment.yaml).
KEDA_OPERATOR_LABELS = {
    "app": "keda-operator",
    "name": "keda-operator",
    "app.kubernetes.io/name": "keda-operator",
    "app.kubernetes.io/component": "operator",
    "app.kubernetes.io/part-of": "keda-operator",
    "app.kubernetes.io/instance": "keda",
}


def merged_values(files: list[Path], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values helm computes: the chart's, then each file, then `overrides` (maps merge, lists replace)."""

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in files:
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return merge(values, overrides or {})


def component(name: str) -> Endpoint:
    return Endpoint.of(
        NS,
        {
            "app.kubernetes.io/name": "sluice",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": name,
        },
    )


def step_pod_labels() -> dict[str, str]:
    """The labels the kubernetes launcher gives a step pod (sluice.launchers.kubernetes.labels)."""
    from sluice.launchers.base import StepRun
    from sluice.launchers.kubernetes import labels
    from sluice.platform import PLATFORM_KEYS, parse_platform

    values = merged_values([])
    platform = parse_platform({k: values[k] for k in PLATFORM_KEYS if k in values}, source=CHART / "values.yaml")
    step = StepRun(
        dag_id="ml_training_pipeline",
        task_id="train",
        run_id="manual__2026-12-01T00:00:00+00:00",
        try_number=1,
        map_index=-1,
        image=platform.image_ref("ml-steps"),
        command=["sluice-step", "train"],
        env={},
        profile_name="default",
        profile=platform.profile("default"),
        artifact_prefix="s3://sluice-artifacts/ml_training_pipeline",
    )
    return labels(step)


def neighbours(docs: list[dict[str, Any]], keda_namespace: str = "keda") -> list[dict[str, Any]]:
    """The pods around the release that the table names."""
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "pod_template.yaml" in d.get("data", {}))
    task = yaml.safe_load(config["data"]["pod_template.yaml"])
    task["metadata"].update(name="kubernetes-task", namespace=NS)
    release_labels = component("worker-default").labels
    return [
        pod("keda-operator", keda_namespace, KEDA_OPERATOR_LABELS),
        pod("step", NS, step_pod_labels()),
        task,
        pod(
            "controller",
            "ingress-nginx",
            {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
        ),
        pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
        pod("curious", "other", {"app": "curious"}),
        pod("impostor", "other", dict(release_labels)),
    ]


def endpoints(values: dict[str, Any], keda_namespace: str = "keda") -> dict[str, Endpoint]:
    names = ["api-server", "scheduler", "dag-processor", "triggerer", "migrate", "kubernetes-task"]
    names += [f"worker-{p['name']}" for p in values["pools"]]
    names += [c for c in ("postgresql", "redis") if values[c]["enabled"]]
    names += ["statsd"] if values["metrics"]["enabled"] else []
    eps = {name: component(name) for name in names}
    # KubernetesExecutor task pods carry no app.kubernetes.io/instance (Argo CD would prune them), but their release.
    eps["kubernetes-task"] = Endpoint.of(
        NS,
        {
            "app.kubernetes.io/name": "sluice",
            "app.kubernetes.io/component": "kubernetes-task",
            "sluice.io/release": RELEASE,
        },
    )
    eps.update(
        {
            "keda-operator": Endpoint.of(keda_namespace, {"app": "keda-operator"}),
            "step": Endpoint.of(NS, {"app.kubernetes.io/name": "sluice-step"}),
            "ingress-controller": Endpoint.of("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
            "prometheus": Endpoint.of("monitoring", {"app.kubernetes.io/name": "prometheus"}),
            "other-namespace": Endpoint.of("other", {"app": "curious"}),
            "other-namespace-with-release-labels": Endpoint("other", component("worker-default").labels),
        }
    )
    return eps


def flow_table(values: dict[str, Any]) -> tuple[list[Flow], list[Flow]]:
    """(required, forbidden) flows of a release with these values."""
    workers = [f"worker-{p['name']}" for p in values["pools"]]
    airflow = ["scheduler", "api-server", "dag-processor", "triggerer", *workers]
    worker_logs, trigger_logs = values["celery"]["workerLogServerPort"], values["triggerer"]["logServerPort"]
    postgres, redis, metrics = values["postgresql"]["enabled"], values["redis"]["enabled"], values["metrics"]["enabled"]
    outsiders = ["step", "other-namespace", "other-namespace-with-release-labels"]

    required = []
    if postgres and values["keda"]["enabled"]:
        required.append(Flow("keda-operator", "postgresql", 5432))  # each pool's scaling query
    if postgres:
        required += [Flow(c, "postgresql", 5432) for c in [*airflow, "migrate"]]
    if redis:
        required += [Flow(c, "redis", 6379) for c in airflow]
    # The Execution API (tasks on workers and on the KubernetesExecutor), the UI/REST API through the ingress.
    required += [Flow(c, "api-server", 8080) for c in [*workers, "kubernetes-task", "ingress-controller"]]
    # Task logs in the UI: running tasks' from their worker, deferred tasks' from the triggerer.
    required += [Flow("api-server", w, worker_logs) for w in workers]
    required.append(Flow("api-server", "triggerer", trigger_logs))
    if metrics:
        required += [Flow(c, "statsd", 9125, "UDP") for c in airflow]
        required.append(Flow("prometheus", "statsd", 9102))

    forbidden = []
    if postgres:
        forbidden += [Flow(s, "postgresql", 5432) for s in outsiders]
    if redis:
        forbidden += [Flow(s, "redis", 6379) for s in [*outsiders, "keda-operator"]]
    forbidden += [Flow(s, w, worker_logs) for s in ("step", "other-namespace") for w in workers]
    forbidden += [Flow(s, "triggerer", trigger_logs) for s in ("step", "other-namespace")]
    if metrics:
        forbidden.append(Flow("other-namespace", "statsd", 9125, "UDP"))
    return required, forbidden


@dataclass
class Analysis:
    verdicts: dict[Flow, Verdict]
    cluster_file: Path


def analyse(
    workdir: Path,
    files: list[Path],
    overrides: dict[str, Any] | None = None,
    keda_namespace: str = "keda",
    also: tuple[Flow, ...] = (),
) -> Analysis:
    """The table's flows (and `also`) of this render, decided by the analyzer."""
    values = merged_values(files, overrides)
    docs = render_chart(overrides, values_files=files, name=RELEASE, namespace=NS)
    required, forbidden = flow_table(values)
    manifests = cluster(docs, NS, neighbours(docs, keda_namespace))
    verdicts = evaluate(manifests, endpoints(values, keda_namespace), [*required, *forbidden, *also], workdir)
    return Analysis(verdicts, workdir / "cluster.yaml")


def _cases(which: int) -> list[Any]:
    return [
        pytest.param(render, flow, id=f"{render}: {flow}")
        for render, files in RENDERS.items()
        for flow in flow_table(merged_values(files))[which]
    ]


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Analysis]:
    """Each values set rendered and analysed once for the whole module."""
    done: dict[str, Analysis] = {}

    def get(render: str) -> Analysis:
        if render not in done:
            done[render] = analyse(tmp_path_factory.mktemp(render), RENDERS[render])
        return done[render]

    return get


def _explain(flow: Flow, verdict: Verdict) -> str:
    return f"{flow}: {verdict.sources} -> {verdict.destinations}; allowed between them: {verdict.between}"


@pytest.mark.parametrize(("render", "flow"), _cases(0))
def test_required_flow_is_allowed(analysis: Callable[[str], Analysis], render: str, flow: Flow) -> None:
    verdict = analysis(render).verdicts[flow]
    assert verdict.allowed_all, "denied: " + _explain(flow, verdict)


@pytest.mark.parametrize(("render", "flow"), _cases(1))
def test_forbidden_flow_is_denied(analysis: Callable[[str], Analysis], render: str, flow: Flow) -> None:
    verdict = analysis(render).verdicts[flow]
    assert not verdict.allowed_any, "allowed: " + _explain(flow, verdict)


@pytest.mark.slow  # the analyzer's command line, ~4 s per render
@pytest.mark.parametrize("render", sorted(RENDERS))
def test_the_analyzers_command_line_agrees_with_every_verdict(analysis: Callable[[str], Analysis], render: str) -> None:
    """The verdicts come from nca's Python objects; its own CLI connectivity map must say the same of each row."""
    result = analysis(render)
    pairs = cli_connections(result.cluster_file)
    disagree = []
    for flow, verdict in result.verdicts.items():
        each = [
            cli_allows(pairs.get((s, d), []), flow.protocol, flow.port)
            for s in verdict.sources
            for d in verdict.destinations
        ]
        if (all(each), any(each)) != (verdict.allowed_all, verdict.allowed_any):
            printed = [pairs.get((s, d)) for s in verdict.sources for d in verdict.destinations]
            disagree.append(f"{_explain(flow, verdict)}; the CLI prints: {printed}")
    assert not disagree, "\n".join(disagree)


def test_keda_operator_is_admitted_from_the_namespace_and_labels_the_values_name(tmp_path: Path) -> None:
    overrides = {"keda": {"operator": {"namespace": "autoscaling", "podLabels": {"app": "keda-operator"}}}}
    result = analyse(tmp_path, [], overrides, keda_namespace="autoscaling")
    assert result.verdicts[Flow("keda-operator", "postgresql", 5432)].allowed_all


def test_keda_operator_elsewhere_than_the_values_say_is_denied(tmp_path: Path) -> None:
    # The operator runs in `keda`, the values say `autoscaling`: PostgreSQL stays closed to it.
    overrides = {"keda": {"operator": {"namespace": "autoscaling"}}}
    result = analyse(tmp_path, [], overrides, keda_namespace="keda")
    assert not result.verdicts[Flow("keda-operator", "postgresql", 5432)].allowed_any


def test_without_keda_postgresql_admits_no_other_namespace(tmp_path: Path) -> None:
    keda = Flow("keda-operator", "postgresql", 5432)
    result = analyse(tmp_path, [], {"keda": {"enabled": False}}, also=(keda,))
    assert not result.verdicts[keda].allowed_any


def test_moved_log_server_ports_are_the_ones_the_api_server_reads_and_the_policies_admit(tmp_path: Path) -> None:
    overrides = {"celery": {"workerLogServerPort": 18793}, "triggerer": {"logServerPort": 18794}}
    result = analyse(tmp_path, [], overrides)
    assert result.verdicts[Flow("api-server", "worker-default", 18793)].allowed_all
    assert result.verdicts[Flow("api-server", "triggerer", 18794)].allowed_all
    docs = yaml.safe_load_all(result.cluster_file.read_text())
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{RELEASE}-api-server")
    env = {e["name"]: e.get("value") for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The api-server builds a log URL from its own config, not from the worker's.
    assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == "18793"
    assert env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] == "18794"


def test_kubernetes_task_pods_without_the_instance_label_keep_their_policies(tmp_path: Path) -> None:
    """They lost app.kubernetes.io/instance (Argo CD's tracking label), not their place: they reach what the
    release's pods reach, and nothing reaches them."""
    reach = [Flow("kubernetes-task", "postgresql", 5432), Flow("kubernetes-task", "redis", 6379)]
    reach.append(Flow("kubernetes-task", "statsd", 9125, "UDP"))
    closed = [Flow("api-server", "kubernetes-task", 8793), Flow("other-namespace", "kubernetes-task", 8793)]
    result = analyse(tmp_path, [], also=(*reach, *closed))
    assert [f for f in reach if not result.verdicts[f].allowed_all] == []
    assert [f for f in closed if result.verdicts[f].allowed_any] == []
