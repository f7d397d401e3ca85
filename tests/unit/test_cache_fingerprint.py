"""The step cache's fingerprint of a local input: its content hash, taken once per version of the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sluice import artifacts
from sluice.cache import DIGEST_XATTR, fingerprint


def xattrs_work(path: Path) -> bool:
    try:
        os.setxattr(path, "user.sluice.probe", b"1")
    except (OSError, AttributeError):
        return False
    return True


def test_the_fingerprint_is_the_contents_sha256(tmp_path: Path) -> None:
    path = tmp_path / "shard.parquet"
    path.write_bytes(b"rows" * 1000)
    assert fingerprint(str(path)) == hashlib.sha256(b"rows" * 1000).hexdigest()


def test_a_file_is_hashed_once_and_a_replaced_or_edited_file_again(tmp_path: Path) -> None:
    path = tmp_path / "shard.parquet"
    path.write_bytes(b"a" * 100)
    if not xattrs_work(path):
        pytest.skip("this filesystem keeps no extended attributes: every call hashes")
    first = fingerprint(str(path))
    assert os.getxattr(path, DIGEST_XATTR).decode().endswith(first)

    # Same size and modification time, other bytes: only a kept digest explains getting the old one back.
    stat = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(b"b" * 100)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(str(path)) == first, "hashed again although size and mtime were unchanged"

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # an edit in place moves the mtime
    assert fingerprint(str(path)) == hashlib.sha256(b"b" * 100).hexdigest()

    artifacts.write_bytes_atomic(str(path), b"c" * 100)  # replaced by rename: a new file, no digest kept
    assert fingerprint(str(path)) == hashlib.sha256(b"c" * 100).hexdigest()


def test_a_cache_link_shares_the_digest_with_its_source(tmp_path: Path) -> None:
    source, cached = tmp_path / "out.bin", tmp_path / "_cache" / "out.bin"
    source.write_bytes(b"x" * 100)
    if not xattrs_work(source):
        pytest.skip("this filesystem keeps no extended attributes")
    digest = fingerprint(str(source))
    artifacts.copy_atomic(str(source), str(cached))
    assert os.getxattr(cached, DIGEST_XATTR).decode().endswith(digest)
