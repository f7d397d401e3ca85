"""Every rendered manifest is valid Kubernetes (oldest and newest supported versions, strict), and every
custom resource matches its CRD model with no unknown key."""

from __future__ import annotations

import subprocess
from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from pydantic import BaseModel

from tests.chart.render import CHART, helm, render_chart

VERSIONS = ["1.30", "1.35"]
CRD_MODELS: dict[str, type[BaseModel]] = {"ScaledObject": ScaledObject, "ServiceMonitor": ServiceMonitor}
VARIANTS = {
    "defaults": {},
    "everything on": {
        "ingress": {"enabled": True, "tls": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "dags": {"gitSync": {"enabled": True, "repo": "https://git.example.org/dags.git"}},
        "scheduler": {"replicas": 2},
    },
    "hpa, external data, no hooks": {
        "keda": {"enabled": False},
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "data": {"metadataSecretName": "db", "brokerUrlSecretName": "broker"},
        "migrations": {"useHelmHooks": False},
    },
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant_docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render_chart(VARIANTS[request.param])


def unknown_keys(model: BaseModel, data: Any, path: str = "") -> list[str]:
    """Keys in ``data`` that the model silently dropped (cloudcoil models accept unknown keys)."""
    dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")

    def walk(given: Any, kept: Any, where: str) -> list[str]:
        if isinstance(given, dict):
            missing = [f"{where}.{k}" for k in given if not isinstance(kept, dict) or k not in kept]
            return missing + [
                p
                for k, v in given.items()
                if isinstance(kept, dict) and k in kept
                for p in walk(v, kept[k], f"{where}.{k}")
            ]
        if isinstance(given, list) and isinstance(kept, list):
            return [p for i, (g, k) in enumerate(zip(given, kept, strict=False)) for p in walk(g, k, f"{where}[{i}]")]
        return []

    return walk(data, dumped, path)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_builtin_manifest_validates_strictly(variant_docs, version: str) -> None:
    checked = 0
    for doc in variant_docs:
        if doc["kind"] in CRD_MODELS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 30


def test_custom_resources_match_their_crd_models_without_unknown_keys(variant_docs) -> None:
    for doc in (d for d in variant_docs if d["kind"] in CRD_MODELS):
        model = CRD_MODELS[doc["kind"]].model_validate(doc)
        assert unknown_keys(model, doc) == [], doc["metadata"]["name"]


def test_strict_validation_catches_an_unknown_field() -> None:
    doc = next(d for d in render_chart(show_only=["templates/scheduler.yaml"]))
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.35", strict=True)


def test_unknown_key_check_catches_a_misspelt_field() -> None:
    doc = next(d for d in render_chart(show_only=["templates/workers.yaml"]) if d["kind"] == "ScaledObject")
    doc["spec"]["pollingIntervall"] = 5
    assert unknown_keys(ScaledObject.model_validate(doc), doc) == [".spec.pollingIntervall"]


def test_helm_lint_strict_passes() -> None:
    proc = subprocess.run([helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
