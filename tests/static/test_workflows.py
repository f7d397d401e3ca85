"""GitHub Actions workflows, checked statically: actionlint (with shellcheck on every `run:` script) passes on
each, and the hosted-runner kind workflow runs the kind suite the way tests/kind expects to be run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
KIND = REPO / ".github" / "workflows" / "kind.yml"
BIN = Path(sys.executable).parent


def steps(path: Path) -> list[dict[str, Any]]:
    workflow = yaml.safe_load(path.read_text())
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_there_are_workflows_to_lint() -> None:
    assert KIND in WORKFLOWS, WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(path: Path) -> None:
    # shellcheck from the dev extra, named explicitly: actionlint silently skips scripts when none is on the PATH.
    proc = subprocess.run(
        [str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck"), "-pyflakes=", "-no-color", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_release_named(path: Path) -> None:
    uses = [line.strip() for line in path.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert uses
    loose = [u for u in uses if not re.fullmatch(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", u)]
    assert not loose, f"pin to a full commit SHA followed by '# vX.Y.Z': {loose}"


def test_kind_workflow_runs_the_kind_suite() -> None:
    assert any("make test-kind" in step.get("run", "") for step in steps(KIND))


def test_kind_workflow_only_installs_kind_the_suite_creates_its_own_cluster() -> None:
    kind_action = next(s for s in steps(KIND) if s.get("uses", "").startswith("helm/kind-action@"))
    assert kind_action["with"]["install_only"] is True
    assert re.fullmatch(r"v\d+\.\d+\.\d+", kind_action["with"]["version"])  # kind itself pinned too
    # ... because the suite's session fixture runs `kind create cluster` (and deletes it) itself.
    assert re.search(r'"kind",\s*"create",\s*"cluster"', (REPO / "tests" / "kind" / "conftest.py").read_text())


def test_kind_workflow_builds_the_images_under_the_tags_the_suite_uses() -> None:
    conftest = (REPO / "tests" / "kind" / "conftest.py").read_text()
    builds = [step["run"] for step in steps(KIND) if step.get("run", "").startswith("docker build")]
    assert "docker build -t sluice-airflow:kind-base -f images/airflow/Dockerfile ." in builds
    assert "docker build -t sluice-ml-steps:kind images/ml-steps" in builds
    for build in builds:
        tag = build.split()[3]
        assert f'"{tag}"' in conftest, f"{tag} is not an image the kind suite builds or loads"


def test_kind_workflow_sets_up_a_python_the_makefile_accepts() -> None:
    setup = next(s for s in steps(KIND) if s.get("uses", "").startswith("actions/setup-python@"))
    major, minor = map(int, str(setup["with"]["python-version"]).split(".")[:2])
    assert (major, minor) >= (3, 11)
