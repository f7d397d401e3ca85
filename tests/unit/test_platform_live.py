"""The platform file is read live: a ConfigMap update reaches running workers and dag-processors without a restart.

The chart mounts the platform ConfigMap as a directory (a subPath mount is never updated), so the kubelet updates
it the way it updates every projected volume: it writes the new files into a new hidden directory and swaps the
``..data`` symlink to it; ``platform.yaml`` is a symlink through ``..data``. ``current_platform()`` parses once per
version of that file, so the next task after the swap launches the new step image (tests/chart/test_restarts.py
proves the chart no longer restarts anything for it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from sluice.platform import current_platform

BASE = {
    "pools": [{"name": "default", "queues": ["default"]}],
    "profiles": {"default": {"cpu": "1", "memory": "1Gi"}},
    "artifacts": {"root": "/tmp/artifacts"},
}


def platform_with_tag(tag: str) -> str:
    return yaml.safe_dump({**BASE, "stepImages": {"ml-steps": {"repository": "reg/ml-steps", "tag": tag}}})


class ConfigMapVolume:
    """A directory laid out as the kubelet lays out a ConfigMap volume (its atomic writer)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def publish(self, files: dict[str, str]) -> None:
        self.generation += 1
        payload = self.root / f"..2026_12_07_00_00_0{self.generation}.000000000"
        payload.mkdir()
        for name, text in files.items():
            (payload / name).write_text(text)
        staged = self.root / "..data_tmp"
        staged.symlink_to(payload.name)
        os.replace(staged, self.root / "..data")  # the one atomic step: readers see the old or the new files
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigMapVolume:
    for name in ("SLUICE_LAUNCHER", "SLUICE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    mounted = ConfigMapVolume(tmp_path / "platform")
    mounted.root.mkdir()
    monkeypatch.setenv("SLUICE_PLATFORM_FILE", str(mounted.root / "platform.yaml"))
    return mounted


def test_a_configmap_update_reaches_the_next_call_without_a_restart(volume: ConfigMapVolume) -> None:
    volume.publish({"platform.yaml": platform_with_tag("1.0.0")})
    assert current_platform().image_ref("ml-steps") == "reg/ml-steps:1.0.0"
    volume.publish({"platform.yaml": platform_with_tag("1.1.0")})
    assert current_platform().image_ref("ml-steps") == "reg/ml-steps:1.1.0"


def test_an_unchanged_file_is_parsed_once(volume: ConfigMapVolume) -> None:
    volume.publish({"platform.yaml": platform_with_tag("1.0.0")})
    assert current_platform() is current_platform()


def test_a_file_rewritten_in_place_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform file named outside a ConfigMap (the local stack's, a test's) is edited in place."""
    path = tmp_path / "platform.yaml"
    path.write_text(platform_with_tag("1.0.0"))
    monkeypatch.setenv("SLUICE_PLATFORM_FILE", str(path))
    assert current_platform().image_ref("ml-steps") == "reg/ml-steps:1.0.0"
    path.write_text(platform_with_tag("1.0.1-rc"))
    assert current_platform().image_ref("ml-steps") == "reg/ml-steps:1.0.1-rc"


def test_a_process_forked_before_the_update_reads_the_new_file(volume: ConfigMapVolume) -> None:
    """A Celery worker preloads the platform before it forks its pool; each task process is forked later still."""
    volume.publish({"platform.yaml": platform_with_tag("1.0.0")})
    current_platform()  # the worker's preload
    read, write = os.pipe()
    volume.publish({"platform.yaml": platform_with_tag("2.0.0")})
    pid = os.fork()
    if pid == 0:  # the task process
        os.close(read)
        os.write(write, current_platform().image_ref("ml-steps").encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 1000).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == "reg/ml-steps:2.0.0"
