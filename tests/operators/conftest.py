"""Fixtures shared by the operator tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def with_profiles(sluice_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run under a platform file that adds the given profiles (local launcher, the session's store)."""

    def use(profiles: dict) -> None:
        platform_file = tmp_path / "platform.yaml"
        platform_file.write_text(
            json.dumps(
                {
                    "pools": [{"name": "default", "queues": ["default"]}],
                    "profiles": {"default": {}, **profiles},
                    "artifacts": {"root": str(sluice_home / "artifacts")},
                    "launcher": {"type": "local"},
                }
            )
        )
        monkeypatch.setenv("SLUICE_PLATFORM_FILE", str(platform_file))

    return use
