"""Render the chart with the real ``helm template`` and return parsed documents.

Modelled on the official Apache Airflow chart's helm tests: one small helper, one behaviour per test.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tools.ensure_helm import helm_path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sluice"


@cache
def helm() -> str:
    return os.environ.get("HELM") or str(helm_path())


class RenderError(RuntimeError):
    """helm refused the values (schema or a `fail` in the chart); the message is helm's."""


def render_chart(
    values: dict[str, Any] | None = None,
    show_only: list[str] | None = None,
    values_files: list[Path] | None = None,
    name: str = "sluice",
    namespace: str = "ml",
    kubeconfig: Path | None = None,
    upgrade: bool = False,
) -> list[dict[str, Any]]:
    """`upgrade` renders with .Release.IsUpgrade; `kubeconfig` names an API server that answers the chart's
    `lookup` calls (tests.chart.lookup_api: what an upgrade finds in the cluster), else every lookup is empty."""
    cmd = [helm(), "template", name, str(CHART), "--namespace", namespace]
    env = None
    if upgrade:
        cmd.append("--is-upgrade")
    if kubeconfig is not None:
        cmd += ["--dry-run=server", "--disable-openapi-validation"]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    for path in values_files or []:
        cmd += ["--values", str(path)]
    cmd += ["--values", "-"]  # the test's own values last: they override the files it names
    for template in show_only or []:
        cmd += ["--show-only", template]
    proc = subprocess.run(cmd, input=yaml.safe_dump(values or {}), capture_output=True, text=True, timeout=60, env=env)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_notes(values: dict[str, Any] | None = None) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: `helm template` does not render it)."""
    cmd = [helm(), "install", "sluice", str(CHART), "--dry-run=client", "--namespace", "ml", "--values", "-"]
    proc = subprocess.run(cmd, input=yaml.safe_dump(values or {}), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    return proc.stdout


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind} {name}; have: {sorted((d['kind'], d['metadata']['name']) for d in docs)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
    return specs


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
