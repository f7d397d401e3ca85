"""The registry's publishing rules at the step's level, with a write failing half-way (no Airflow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec.implementations.local as local_fs
import pytest
from sluice_steps import registry
from sluice_steps.contract import StepError

FILES = {"model.joblib": b"model", "MODEL_CARD.md": b"# card", "roc.png": b"png"}


def test_a_version_is_published_whole_then_current_points_at_it(tmp_path: Path) -> None:
    base = str(tmp_path / "m")
    registry.publish_version(base, "1", FILES, {"model_sha256": "abc"})
    assert registry.read_current(base) is None, "publishing a version does not switch current by itself"
    registry.set_current(base, "1")
    assert registry.read_current(base)["version"] == "1"
    assert sorted(p.name for p in (tmp_path / "m" / "1").iterdir()) == sorted([*FILES, registry.MARKER])
    assert registry.next_version(base) == "2"


def test_an_existing_version_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    base = str(tmp_path / "m")
    registry.publish_version(base, "1", FILES, {})
    with pytest.raises(registry.VersionExists, match="never overwritten"):
        registry.publish_version(base, "1", {"model.joblib": b"other"}, {})
    assert (tmp_path / "m" / "1" / "model.joblib").read_bytes() == b"model"


def test_a_write_failing_half_way_leaves_no_version_and_current_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = str(tmp_path / "m")
    registry.publish_version(base, "1", FILES, {})
    registry.set_current(base, "1")
    real_open = local_fs.LocalFileSystem._open
    calls = {"n": 0}

    def failing_open(self, path, mode="rb", *args, **kwargs):
        if "w" in mode:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk full")
        return real_open(self, path, mode, *args, **kwargs)

    monkeypatch.setattr(local_fs.LocalFileSystem, "_open", failing_open)
    with pytest.raises((OSError, StepError)):
        registry.publish_version(base, "2", FILES, {})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "current"], "no version 2, no temp dir"
    assert json.loads((tmp_path / "m" / "current").read_text())["version"] == "1"
    with pytest.raises(StepError, match="not complete"):
        registry.set_current(base, "2")
