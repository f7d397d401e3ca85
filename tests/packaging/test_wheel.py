"""Installed from wheels, outside the repository, Sluice works (issue #28, "done when"): from an empty folder,
``sluice check`` on a copy of dags/ and ``sluice demo`` with the defaults the package ships, and the wheels hold
the packages and nothing of the test harness.

The wheels (sluice, and sluice-steps: the local launcher runs ``sluice-step`` from the same environment) are
built from a copy of their sources, so the build writes nothing into the checkout; sluice's as `python -m build`
makes it, through its sdist (the wheel built from the unpacked sdist), which proves the sdist carries what the wheel
adds from outside the package (setup.py: the chart's values.yaml and the example DAGs). They are installed with
their dependencies into a fresh virtualenv under a temporary directory, pinned by requirements/lock.txt as in
``make setup``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Builds two wheels, installs Airflow into a new virtualenv, runs the demo. Building ~1 s and installing ~4 s with uv's
# cache warm; the demo took 155-285 s on a 2-core machine shared with other test runs (load 8-15), so the default
# bound of 300 s per test is too tight for it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
# Each distribution: where its pyproject.toml is, what else its build needs, and whether it is built through its
# sdist (uv build with neither --sdist nor --wheel: the sdist, then the wheel from it).
SOURCES = {
    "sluice": (
        REPO,
        ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "operators", "dags", "charts/sluice/values.yaml"),
        True,
    ),
    "sluice-steps": (REPO / "images" / "ml-steps", ("pyproject.toml", "sluice_steps"), False),
}

PACKAGES = {"sluice", "sluice_steps"}
HARNESS = ("tests", "conftest.py", "pytest")  # path parts that would mean the test harness shipped


def shipped(source: Path) -> dict[str, Path]:
    """What setup.py adds to the sluice wheel from outside the package: its path in the wheel → the original (in
    the copy the wheel was built from: dags/ may change while the test runs)."""
    return {"sluice/data/values.yaml": source / "charts" / "sluice" / "values.yaml"} | {
        f"sluice/examples/{dag.name}": dag for dag in sorted((source / "dags").glob("*.py"))
    }


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    found = str(uv) if uv.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (make setup installs it into .venv)")
    return found


def _run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    uv, work = _uv(), tmp_path_factory.mktemp("wheels")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name, (root, parts, through_sdist) in SOURCES.items():
        source = work / "src" / name
        for part in parts:
            if (root / part).is_dir():
                shutil.copytree(root / part, source / part, ignore=ignore)
            else:
                (source / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / part, source / part)
        # The build backend is the one `make setup` installed (setuptools): no download, no isolated environment.
        kinds = () if through_sdist else ("--wheel",)
        _run(uv, "build", "-q", *kinds, "--no-build-isolation", "--python", sys.executable, "-o", work, source)
    built = sorted(work.glob("*.whl"))
    assert len(built) == 2, built
    return built


@pytest.fixture(scope="module")
def venv(wheels: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv, where = _uv(), tmp_path_factory.mktemp("installed") / "venv"
    _run(uv, "venv", "-q", "--python", sys.executable, where)
    lock, overrides = REPO / "requirements" / "lock.txt", REPO / "requirements" / "overrides.txt"
    python = where / "bin" / "python"
    _run(uv, "pip", "install", "-q", "--python", python, "--constraint", lock, "--override", overrides, *wheels)
    return where


@pytest.fixture
def user(venv: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A user's shell: the new virtualenv first on PATH, a home of its own, an empty working folder, and nothing of
    this session's Sluice or Airflow settings (conftest sets them) nor of the checkout. PYTHON* goes too: where
    PYTHONDONTWRITEBYTECODE is set (this machine), every step process would compile scikit-learn from source
    again; the fresh virtualenv has no bytecode until its modules are first imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_", "PYTHON", "VIRTUAL_ENV"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(REPO)]
    env |= {"PATH": os.pathsep.join([str(venv / "bin"), *path]), "HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    (tmp_path / "home").mkdir()
    folder = tmp_path / "project"
    folder.mkdir()
    return env, folder


def test_the_wheels_hold_the_packages_their_data_and_no_test_harness(venv: Path, wheels: list[Path]) -> None:
    import zipfile

    for wheel in wheels:
        names = zipfile.ZipFile(wheel).namelist()
        tops = {name.split("/")[0] for name in names if ".dist-info/" not in name}
        assert tops <= PACKAGES, f"{wheel.name} ships {sorted(tops - PACKAGES)}"
        harness = [name for name in names if any(part.startswith(HARNESS) for part in name.split("/"))]
        assert harness == [], f"{wheel.name} ships test files: {harness}"


def test_the_sdist_carries_the_originals_and_the_wheel_them_byte_for_byte(wheels: list[Path]) -> None:
    """One source each (setup.py): the sdist holds charts/sluice/values.yaml and dags/*.py as they are in the
    repository, and the wheel built from that sdist holds exactly those bytes under sluice/data and sluice/examples."""
    import tarfile
    import zipfile

    source = wheels[0].parent / "src" / "sluice"
    expected = shipped(source)
    assert len(expected) > 1, "no example DAG was built from"
    (sdist,) = wheels[0].parent.glob("sluice-*.tar.gz")
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        for original in expected.values():
            member = tar.extractfile(f"{top}/{original.relative_to(source).as_posix()}")
            assert member is not None and member.read() == original.read_bytes(), original
    wheel = zipfile.ZipFile(next(w for w in wheels if w.name.startswith("sluice-0")))
    added = {n for n in wheel.namelist() if n.startswith(("sluice/data/", "sluice/examples/"))}
    assert added == set(expected)
    for name, original in expected.items():
        assert wheel.read(name) == original.read_bytes(), f"{name} differs from {original.relative_to(source)}"


def test_sluice_check_on_a_copy_of_the_dags(user: tuple[dict[str, str], Path]) -> None:
    env, folder = user
    shutil.copytree(REPO / "dags", folder / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    located = _run("python", "-c", "import sluice; print(sluice.__file__)", env=env, cwd=folder)
    assert not Path(located.stdout.strip()).resolve().is_relative_to(REPO), located.stdout
    proc = _run("sluice", "check", "dags", env=env, cwd=folder)
    assert "every DAG imports" in proc.stdout, proc.stdout


def test_sluice_demo_with_the_defaults_the_package_ships(user: tuple[dict[str, str], Path]) -> None:
    env, folder = user
    proc = _run("sluice", "demo", env=env, cwd=folder)
    assert "success" in proc.stdout and "publish" in proc.stdout, proc.stdout[-3000:]
    home = Path(env["HOME"]) / ".sluice"  # installed, state goes to ~/.sluice (SLUICE_HOME to choose)
    assert (home / "artifacts" / "ml_training_pipeline").is_dir()
    assert list(folder.iterdir()) == [], "the demo wrote into the working folder"
