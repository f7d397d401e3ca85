"""The two images `make test` built (tools/images.py), run for real with the container engine: no mocks.

Skipped with the reason where no engine or image is here; failed instead under SLUICE_REQUIRE_CONTAINERS=1
(tests/support/containers.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from sluice.launchers.engine import Engine

from tests.support.containers import IMAGE_REFS, PLATFORM_IMAGE, STEP_IMAGE, require_image
from tools.images import SOURCE, git_revision

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # containers started from real images, a few s each

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "operators" / "sluice" / "step_specs" / "ml-steps.json"  # what `make step-specs` writes


def run(
    engine: Engine, ref: str, *args: str, entrypoint: str, flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """One container, offline and removed after: ``entrypoint args...`` (explicit: the bases' entrypoints differ)."""
    return engine.run(
        "run", "--rm", *engine.limit_args, "--network", "none", *flags, "--entrypoint", entrypoint, ref, *args,
        timeout=180,
    )  # fmt: skip


def config(engine: Engine, ref: str) -> dict[str, object]:
    done = engine.run("image", "inspect", "--format", "{{json .Config}}", ref, check=True)
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


@pytest.fixture(scope="module")
def steps() -> Engine:
    return require_image(STEP_IMAGE)


@pytest.fixture(scope="module")
def platform() -> Engine:
    return require_image(PLATFORM_IMAGE)


# --- both images ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ml-steps", "airflow"])
def test_image_runs_as_a_non_root_numeric_user(key: str) -> None:
    ref = IMAGE_REFS[key]
    engine = require_image(ref)
    user = str(config(engine, ref)["User"])
    assert user.isdigit() and user != "0", f"{ref} runs as {user!r}"
    done = run(engine, ref, "-u", entrypoint="id")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == user


@pytest.mark.parametrize("key", ["ml-steps", "airflow"])
def test_image_carries_oci_labels_of_this_commit(key: str) -> None:
    ref = IMAGE_REFS[key]
    labels = config(require_image(ref), ref)["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.source"] == SOURCE
    assert labels["org.opencontainers.image.version"] == ref.rsplit(":", 1)[1]
    assert labels["org.opencontainers.image.title"]
    assert labels["org.opencontainers.image.revision"] == git_revision(), (
        f"{ref} was built from another commit: `make images` rebuilds it (`make test` does first)"
    )


# --- the step image -------------------------------------------------------------------------------------------


def test_step_cli_answers_offline_on_a_read_only_root(steps: Engine) -> None:
    hardened = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
    done = run(steps, STEP_IMAGE, "--help", entrypoint="sluice-step", flags=hardened)
    assert "usage: sluice-step" in done.stderr + done.stdout
    assert re.search(r"\btrain\b", done.stderr + done.stdout)
    assert "Traceback" not in done.stderr


def test_step_image_describes_the_specs_the_platform_ships(steps: Engine) -> None:
    """DAGs are checked at import against the specs the sluice package ships (``sluice/step_specs/ml-steps.json``);
    the pods run the built image. tests/steps compares that JSON with the step sources; this compares it with what
    the image says, so an image built from other (stale or newer) step sources than the JSON fails here."""
    done = run(steps, STEP_IMAGE, "--describe", entrypoint="sluice-step", flags=("--read-only",))
    assert done.returncode == 0, done.stderr[-2000:]
    shipped = SHIPPED.read_text()
    if done.stdout != shipped:
        image, package = json.loads(done.stdout)["steps"], json.loads(shipped)["steps"]
        differ = sorted(name for name in image.keys() | package.keys() if image.get(name) != package.get(name))
        pytest.fail(
            f"{STEP_IMAGE}'s `sluice-step --describe` differs from {SHIPPED.relative_to(REPO)} (steps: "
            f"{', '.join(differ) or 'none; the text differs'}): rebuild the image (`make images`) or regenerate "
            "the JSON from the step sources (`make step-specs`)",
            pytrace=False,
        )


def test_step_image_has_no_airflow(steps: Engine) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u; "
        "print(u.find_spec('airflow'), sorted(d.name for d in m.distributions() if 'airflow' in d.name.lower()))"
    )
    done = run(steps, STEP_IMAGE, "-c", probe, entrypoint="python")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None []"


def test_step_image_imports_scikit_learn_from_compiled_bytecode(steps: Engine) -> None:
    """Every module has its .pyc, and importing loads them all (`python -v` names any module compiled from source):
    without them each step process on a read-only root compiles scikit-learn from source, seconds of CPU."""
    missing = (
        "import importlib.util as u, pathlib, sklearn; "
        "root = pathlib.Path(sklearn.__file__).parent; "
        "py = list(root.rglob('*.py')); "
        "print(len(py), [str(p) for p in py if not pathlib.Path(u.cache_from_source(str(p))).is_file()][:5])"
    )
    done = run(steps, STEP_IMAGE, "-c", missing, entrypoint="python", flags=("--read-only",))
    assert done.returncode == 0, done.stderr
    count, absent = done.stdout.strip().split(" ", 1)
    assert int(count) > 100 and absent == "[]", done.stdout
    verbose = run(
        steps, STEP_IMAGE, "-v", "-c", "import sklearn.ensemble, sluice_steps.train", entrypoint="python",
        flags=("--read-only",),
    )  # fmt: skip
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    from_source = re.findall(r"^# code object from '?(\S+?\.py)'?$", verbose.stderr, flags=re.M)
    assert from_source == [], f"compiled at import: {from_source[:5]}"


# --- the platform image ---------------------------------------------------------------------------------------


def test_platform_image_runs_the_pinned_airflow_as_50000(platform: Engine) -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(d.split("==")[1] for d in deps if d.startswith("apache-airflow=="))
    done = run(platform, PLATFORM_IMAGE, "version", entrypoint="airflow", flags=("--user", "50000"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == pinned


def test_platform_image_imports_sluice_and_carries_the_dags(platform: Engine) -> None:
    probe = (
        "import os, sluice.operators; "
        "print(os.environ['AIRFLOW_HOME'], sorted(os.listdir(os.environ['AIRFLOW_HOME'] + '/dags')))"
    )
    done = run(platform, PLATFORM_IMAGE, "-c", probe, entrypoint="python", flags=("--user", "50000"))
    assert done.returncode == 0, done.stderr[-2000:]
    home, dags = done.stdout.strip().split(" ", 1)
    assert home == "/opt/airflow"
    assert "ml_training_pipeline.py" in dags
    which = run(platform, PLATFORM_IMAGE, "-c", "command -v airflow && command -v sluice", entrypoint="sh")
    assert which.returncode == 0 and len(which.stdout.split()) == 2, which.stdout + which.stderr
