"""Every rendered pod can be set up by a kubelet: each Secret key, ConfigMap key and volume it names exists.

No process runs here (``Kubelet.admit``): env and volumes are resolved against the render plus the Secrets
a user creates first, exactly as the chart runtime test resolves them before starting the pods. A key the
chart reads but the documented Secret does not hold shows up as the kubelet's CreateContainerConfigError.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.render import REPO, render_chart
from tests.chart_runtime.install import NAMESPACE, images, user_secret
from tests.chart_runtime.kubelet import Kubelet, Objects
from tests.chart_runtime.services import missing_images

pytestmark = pytest.mark.slow  # the chart's pods set up as processes (`make chart-smoke`), ~30 s

AIRFLOW_SECRETS = {"fernet-key": "f", "api-secret-key": "a", "jwt-secret": "j"}
ARTIFACTS = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
DB = "postgresql+psycopg2://airflow:pw@db:5432/airflow"
# What docs/chart.md and values.yaml tell a user to create, per case: (values, values files, Secrets).
CASES = {
    "defaults": ({}, [], {}),
    "prod values (external Secrets)": (
        {},
        [REPO / "deploy" / "values-prod.yaml"],
        {
            "sluice-metadata-db": {"connection": DB, "keda-connection": "postgresql://airflow:pw@db:5432/airflow"},
            "sluice-broker": {"connection": "redis://redis:6379/0"},
            "sluice-airflow-secrets": AIRFLOW_SECRETS,
            "sluice-artifacts": ARTIFACTS,
        },
    ),
    "an existing database Secret without KEDA needs only `connection`": (
        {
            "keda": {"enabled": False},
            "postgresql": {"enabled": False},
            "data": {"metadataSecretName": "my-db", "brokerUrl": "redis://redis:6379/0"},
        },
        [],
        {"my-db": {"connection": DB}},
    ),
    "an existing admin password Secret": (
        {"createUserJob": {"passwordSecretName": "my-admin"}},
        [],
        {"my-admin": {"password": "p"}},
    ),
}


@pytest.fixture(scope="module")
def kubelet_images(tmp_path_factory: pytest.TempPathFactory):
    """Every image the chart names, the bundled services' included where this machine has their binaries."""
    return images(tmp_path_factory.mktemp("images"))


def _not_modelled_here(error: str) -> bool:
    """A bundled service whose binary this machine lacks (services.py): the one error that is not the chart's."""
    return any(error.startswith(f"image {repository}:") for repository in missing_images())


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_platform_pod_can_be_set_up(case: str, kubelet_images, tmp_path: Path, record_property) -> None:
    values, files, secrets = CASES[case]
    docs = render_chart(values, values_files=files, namespace=NAMESPACE)
    objects = Objects([*docs, *(user_secret(name, data) for name, data in secrets.items())])
    admitted = Kubelet(objects, kubelet_images, NAMESPACE, tmp_path).admit(docs)
    problems = {w: e for w, e in admitted.items() if e != "ok" and not _not_modelled_here(e)}
    assert problems == {}
    ready = {w for w, e in admitted.items() if e == "ok"}
    assert ready >= {"Deployment/sluice-scheduler", "Deployment/sluice-worker-default"}
    record_property("proven", f"{len(ready)} pods set up (env, Secrets, volumes) with only the documented Secrets")


def test_a_missing_key_is_reported_as_the_kubelet_would(kubelet_images, tmp_path: Path, record_property) -> None:
    """The check above can fail: a database Secret without `keda-connection` while KEDA is on."""
    values, _, _ = CASES["an existing database Secret without KEDA needs only `connection`"]
    docs = render_chart({**values, "keda": {"enabled": True}}, namespace=NAMESPACE)
    objects = Objects([*docs, user_secret("my-db", {"connection": DB})])
    admitted = Kubelet(objects, kubelet_images, NAMESPACE, tmp_path).admit(docs)
    assert admitted["Deployment/sluice-worker-default"] == (
        "CreateContainerConfigError: couldn't find key keda-connection in Secret ml/my-db "
        "(env SLUICE_KEDA_DB_CONN of container worker)"
    )
    record_property("proven", "a Secret without keda-connection while KEDA is on: CreateContainerConfigError")
