"""tools/images.py (`make images`) without building: the refs it builds, the bases it names, its no-engine paths."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sluice.platform import load_platform

from tools import images as tool

REPO = Path(__file__).resolve().parents[2]


def test_builds_the_refs_the_platform_config_and_the_chart_name() -> None:
    refs = {image.key: image.ref for image in tool.images()}
    assert refs["ml-steps"] == load_platform().image_ref("ml-steps")  # the chart's values (laptop mode)
    assert refs == {
        "ml-steps": "ghcr.io/sluice-ml/ml-steps:0.1.0",
        "airflow": "ghcr.io/sluice-ml/airflow:3.3.2-sluice.0.1.0",
    }


def test_each_dockerfile_takes_its_official_base_as_an_argument() -> None:
    bases = {image.key: image.default_base() for image in tool.images()}
    assert re.fullmatch(r"docker\.io/library/python:3\.13\.\d+-slim-trixie", bases["ml-steps"])
    assert re.fullmatch(r"docker\.io/apache/airflow:\d+\.\d+\.\d+-python3\.13", bases["airflow"])
    # The Debian-made base has the same Python minor as both official bases (and as the step lock's target).
    assert tool.DEBIAN_BASE.endswith(f"-{tool.DEBIAN_PYTHON}") and tool.DEBIAN_PYTHON == "3.13"
    assert "--python-version 3.13" in (REPO / "images/ml-steps/requirements.lock").read_text().splitlines()[1]


def test_labels_come_last_so_a_new_commit_rebuilds_no_layer() -> None:
    for image in tool.images():
        lines = [line.split()[0] for line in image.dockerfile.read_text().splitlines() if re.match(r"^[A-Z]+ ", line)]
        assert lines.index("LABEL") > max(i for i, word in enumerate(lines) if word in ("RUN", "COPY")), image.key


def test_debian_mirror_is_read_from_apt_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://other.example/debian trixie main\n")
    assert tool.debian_mirror([deb822]) == "http://mirror.example/debian"
    assert tool.debian_mirror([tmp_path / "absent", one_line]) == "http://other.example/debian"
    assert tool.debian_mirror([tmp_path / "absent"]) == tool.DEBIAN_MIRROR


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICE_CONTAINER_ENGINE": "/nonexistent/engine"}  # named and absent: nothing installed
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "images.py"), "build", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_no_engine_if_possible_says_why_in_one_line_and_exits_0() -> None:
    done = _tool("--if-possible")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "not built" in lines[0] and "container tests will skip" in lines[0], done.stdout


def test_no_engine_fails_with_the_install_hint() -> None:
    done = _tool()
    assert done.returncode == 1
    assert "apt-get install podman runc" in done.stderr
