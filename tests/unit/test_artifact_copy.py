"""artifacts.copy_atomic, how the step cache stores and serves outputs: never through this process's memory
(a shard is hundreds of MB in a Celery worker), and never a half file at the target."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest
from sluice import artifacts


def test_a_local_copy_is_a_link_that_holds_nothing_in_memory(tmp_path: Path) -> None:
    source = tmp_path / "run" / "features.parquet"
    source.parent.mkdir()
    source.write_bytes(os.urandom(32 * 2**20))
    target = tmp_path / "_cache" / "key" / "outputs" / "features"
    tracemalloc.start()
    try:
        artifacts.copy_atomic(str(source), str(target))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert target.read_bytes() == source.read_bytes()
    assert os.stat(target).st_ino == os.stat(source).st_ino, "a hard link: no bytes copied"
    assert peak < 2**20, f"{peak} bytes allocated copying a 32 MiB artifact"
    assert sorted(p.name for p in target.parent.iterdir()) == ["features"], "no temp file left"


def test_replacing_the_source_later_leaves_the_copy_as_it_was(tmp_path: Path) -> None:
    """Why a link is safe: artifacts are replaced by a rename (a new file), never rewritten in place."""
    source, target = tmp_path / "out.bin", tmp_path / "cache" / "out.bin"
    source.write_bytes(b"first")
    artifacts.copy_atomic(str(source), str(target))
    artifacts.write_bytes_atomic(str(source), b"second")
    assert target.read_bytes() == b"first"


def test_a_copy_over_an_existing_target_replaces_it_whole(tmp_path: Path) -> None:
    source, target = tmp_path / "new.bin", tmp_path / "target.bin"
    source.write_bytes(b"new" * 1000)
    target.write_bytes(b"old")
    artifacts.copy_atomic(str(source), str(target))
    assert target.read_bytes() == b"new" * 1000


def test_a_missing_source_leaves_nothing_at_the_target(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "out.bin"
    with pytest.raises(FileNotFoundError):
        artifacts.copy_atomic(str(tmp_path / "missing.bin"), str(target))
    assert not target.exists() and not list(target.parent.iterdir())
