"""The ML step image, checked statically: lint, pins, no Airflow inside (test_built_images.py runs the image)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "images" / "ml-steps"


def pins(lock: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", lock.read_text(), flags=re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(IMAGE / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_to_an_exact_tag() -> None:
    """The official base is the default of `ARG BASE_IMAGE` (tools/images.py passes a Debian-made one where no
    registry answers); FROM takes the argument. Python 3.13: the lock's target and the Debian base's minor."""
    dockerfile = (IMAGE / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, flags=re.M)
    assert base, "the Dockerfile declares `ARG BASE_IMAGE=<official image>`"
    assert re.fullmatch(r"docker\.io/library/python:3\.13\.\d+-slim-trixie", base.group(1)), base.group(1)
    assert re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.M) == ["${BASE_IMAGE}"]


def test_image_runs_as_a_non_root_numeric_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (IMAGE / "Dockerfile").read_text(), flags=re.M)
    assert users and users[-1].isdigit() and users[-1] != "0"


def test_step_lock_is_hashed_and_has_no_airflow() -> None:
    lock = (IMAGE / "requirements.lock").read_text()
    assert "--hash=sha256:" in lock
    assert "apache-airflow" not in lock


def test_step_lock_agrees_with_the_platform_lock() -> None:
    step, platform = pins(IMAGE / "requirements.lock"), pins(REPO / "requirements" / "lock.txt")
    differ = {name: (v, platform[name]) for name, v in step.items() if name in platform and platform[name] != v}
    assert differ == {}, "run `make lock` to re-pin both locks together"


def test_build_context_ignores_caches() -> None:
    ignored = (IMAGE / ".dockerignore").read_text().split()
    assert "**/__pycache__" in ignored and "*.egg-info" in ignored
