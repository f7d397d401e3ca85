"""What the package needs at run time outside a checkout (issue #28) has one source each: the chart's values and the
example DAGs are never copied in git; the wheel's build adds charts/sluice/values.yaml and dags/*.py as
``sluice/data/values.yaml`` and ``sluice/examples/`` (setup.py), and a checkout reads the originals.
tests/packaging/test_wheel.py builds the sdist and the wheel and proves the files byte-identical and the install
working; these check the lookups and the build step without building a distribution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sluice
from sluice import platform as platform_module
from sluice.platform import (
    PlatformError,
    chart_values_file,
    default_dags_folder,
    example_dags_folder,
    load_platform,
    sluice_home,
    source_checkout,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(sluice.__file__).resolve().parent


def test_a_checkout_reads_the_originals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_HOME", raising=False)
    assert source_checkout() == REPO
    assert sluice_home() == REPO / ".sluice"
    assert chart_values_file() == REPO / "charts" / "sluice" / "values.yaml"
    assert example_dags_folder() == default_dags_folder() == REPO / "dags"


def test_git_holds_no_copy_of_the_values_or_a_dag_under_operators() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "operators"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    originals = {(REPO / "charts" / "sluice" / "values.yaml").read_bytes()}
    originals |= {dag.read_bytes() for dag in (REPO / "dags").glob("*.py")}
    names = {"values.yaml"} | {dag.name for dag in (REPO / "dags").glob("*.py")}
    copies = [
        path
        for path in filter(None, tracked)
        if Path(path).name in names or ((REPO / path).is_file() and (REPO / path).read_bytes() in originals)
    ]
    assert copies == [], f"copies of charts/sluice/values.yaml or dags/*.py are tracked: {copies}"


def test_the_build_step_names_each_original_under_its_package_path() -> None:
    """setup.py's list, read without building (tests/packaging/test_wheel.py builds): every DAG and the values."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, setuptools, json; setuptools.setup = lambda **kw: None; "
            "ns = runpy.run_path('setup.py'); print(json.dumps({k: str(v) for k, v in ns['shipped']().items()}))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = {"sluice/data/values.yaml": str(REPO / "charts" / "sluice" / "values.yaml")}
    expected |= {f"sluice/examples/{dag.name}": str(dag) for dag in (REPO / "dags").glob("*.py")}
    assert json.loads(proc.stdout) == expected


def test_installed_the_defaults_are_the_users_home_and_the_shipped_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform_module, "source_checkout", lambda: None)
    monkeypatch.delenv("SLUICE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sluice_home() == tmp_path / ".sluice"
    assert example_dags_folder() == default_dags_folder() == PACKAGE / "examples"
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "elsewhere"))
    assert sluice_home() == tmp_path / "elsewhere"


def test_installed_without_the_values_the_error_names_the_build_and_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This checkout's package has no sluice/data/ (only a wheel does): read as an install, it is a broken one."""
    monkeypatch.setattr(platform_module, "source_checkout", lambda: None)
    monkeypatch.delenv("SLUICE_PLATFORM_FILE", raising=False)
    with pytest.raises(
        PlatformError, match=r"sluice/data/values\.yaml does not exist.*setup\.py.*SLUICE_PLATFORM_FILE"
    ):
        chart_values_file()
    with pytest.raises(PlatformError, match=r"values\.yaml does not exist"):
        load_platform()


def test_laptop_mode_loads_the_charts_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUICE_PLATFORM_FILE", "SLUICE_LAUNCHER", "SLUICE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path))
    platform = load_platform()
    assert platform.launcher.type == "local"
    assert platform.artifacts.root == str(tmp_path / "artifacts")
    assert platform.pools and "default" in platform.profiles


def test_without_the_step_package_the_demo_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sluice` alone installed: the examples' data and steps are sluice-steps', and the demo says so."""
    from sluice import runs

    monkeypatch.setattr(runs, "STEPS_PACKAGE", "sluice_steps_absent")
    with pytest.raises(runs.StepsNotInstalled, match="distribution sluice-steps"):
        runs.require_steps_package()
