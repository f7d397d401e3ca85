"""What the package needs at run time ships inside it (issue #28): the chart's values and the example DAGs are copied
into ``sluice/data`` and ``sluice/examples`` (tools/package_data.py) and read with importlib.resources, so an
install from a wheel, with no checkout beside it, works as a checkout does. tests/packaging/test_wheel.py proves it
installed; these check the copies and the defaults without building anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sluice
from sluice import platform as platform_module
from sluice.platform import (
    chart_values_file,
    default_dags_folder,
    example_dags_folder,
    load_platform,
    sluice_home,
    source_checkout,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(sluice.__file__).resolve().parent


def test_the_shipped_copies_equal_their_originals() -> None:
    """charts/sluice/values.yaml and dags/*.py stay the truth; `make package-data` copies them again."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "package_data.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_the_package_reads_its_own_copies() -> None:
    assert chart_values_file() == PACKAGE / "data" / "values.yaml"
    assert example_dags_folder() == PACKAGE / "examples"
    assert sorted(p.name for p in example_dags_folder().glob("*.py")) == sorted(
        p.name for p in (REPO / "dags").glob("*.py")
    )


def test_pyproject_ships_the_copies_as_package_data() -> None:
    import tomllib

    shipped = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["sluice"]
    assert {"data/*.yaml", "examples/*.py"} <= set(shipped)


def test_a_checkout_keeps_its_own_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_HOME", raising=False)
    assert source_checkout() == REPO
    assert sluice_home() == REPO / ".sluice"
    assert default_dags_folder() == REPO / "dags"


def test_installed_the_defaults_are_the_users_home_and_the_shipped_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform_module, "source_checkout", lambda: None)
    monkeypatch.delenv("SLUICE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sluice_home() == tmp_path / ".sluice"
    assert default_dags_folder() == example_dags_folder()
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "elsewhere"))
    assert sluice_home() == tmp_path / "elsewhere"


def test_laptop_mode_loads_the_shipped_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
