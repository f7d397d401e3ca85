"""Content-addressed step cache: same code, command, params and input bytes → reuse the outputs.

Key = sha256 over (contract version, code identity, command, params, output names, input fingerprints,
cache version). The code identity comes from the launcher (``Launcher.code_identity``, rules in
``sluice.code_identity``): the step package's sources locally, the image digest on a cluster; a step whose
code cannot be named (a mutable tag without ``cache_version``) is not cached. Entries live under
``{artifact_root}/_cache/{key}/``; ``_result.json`` is written last and is the commit marker, so a
half-stored entry is never a hit. Outputs go in and out with ``artifacts.copy_atomic``: a hard link on a
filesystem, a server-side copy on an object store; never through this process's memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

from sluice import artifacts
from sluice.contract import CONTRACT_VERSION, RESULT_FILE

CHUNK = 1 << 20
DIGEST_XATTR = "user.sluice.sha256"


def fingerprint(uri: str) -> str:
    """Content hash of a local artifact; the store's own checksum (ETag) for remote ones."""
    fs, path = url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"input artifact {uri} does not exist")
    if fs.isdir(path):
        return hashlib.sha256(
            "".join(
                fingerprint(f"{uri.rstrip('/')}/{p.rsplit('/', 1)[-1]}") for p in sorted(fs.ls(path, detail=False))
            ).encode()
        ).hexdigest()
    local = artifacts.local_path(uri)
    if local is not None:
        return local_digest(local)
    return f"{fs.protocol}:{fs.checksum(path)}"


def local_digest(path: str) -> str:
    """sha256 of a local file, hashed once per version of the file.

    The digest is kept in an extended attribute of the file (``user.sluice.sha256``) with the size and
    modification time it was taken at: artifacts are replaced by rename (a new file, no attribute), the
    cache's hard links share it, and a file changed in place no longer matches. Where extended attributes are
    not supported (macOS, some filesystems) every call hashes.
    """
    stat = os.stat(path)
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}:"
    with contextlib.suppress(OSError, AttributeError):
        kept = os.getxattr(path, DIGEST_XATTR).decode()
        if kept.startswith(stamp):
            return kept.removeprefix(stamp)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with contextlib.suppress(OSError, AttributeError):
        os.setxattr(path, DIGEST_XATTR, (stamp + value).encode())
    return value


def cache_key(
    code: str,
    command: list[str],
    params: dict[str, Any],
    inputs: dict[str, Any],
    outputs: dict[str, str],
    cache_version: str | None,
) -> str:
    """``code`` is the launcher's ``CodeIdentity.value`` for the step: what runs, not what it is called."""
    material = {
        "contract_version": CONTRACT_VERSION,
        "code": code,
        "command": command,
        "params": params,
        "outputs": sorted(outputs),
        "inputs": {
            name: [fingerprint(u) for u in uri] if isinstance(uri, list) else fingerprint(uri)
            for name, uri in sorted(inputs.items())
        },
        "cache_version": cache_version,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class CachePlan:
    """Whether one try of a step uses the cache: ``store`` and ``key`` when it does; ``note`` names the code
    the key covers, or says why the cache is off for the step (both go to the task log)."""

    store: StepCache | None
    key: str | None
    note: str
    seconds: float = 0.0  # spent computing the key (hashing the inputs): reported in the result's ``cache``


@dataclass(frozen=True)
class CacheHit:
    key: str
    source: dict[str, Any]
    result: dict[str, Any]


class StepCache:
    def __init__(self, artifact_root: str) -> None:
        self.root = artifacts.join(artifact_root, "_cache")

    def entry(self, key: str) -> str:
        return artifacts.join(self.root, key)

    def lookup(self, key: str, outputs: dict[str, str]) -> CacheHit | None:
        """Copy a cached entry's files to this run's output URIs; None on a miss."""
        entry = self.entry(key)
        marker = artifacts.join(entry, RESULT_FILE)
        if not artifacts.exists(marker):
            return None
        stored = artifacts.read_json(marker)
        for name, uri in outputs.items():
            artifacts.copy_atomic(artifacts.join(entry, "outputs", name), uri)
        result = {**stored["result"], "outputs": dict(outputs)}
        return CacheHit(key=key, source=stored["source"], result=result)

    def store(self, key: str, outputs: dict[str, str], result: dict[str, Any], source: dict[str, Any]) -> None:
        entry = self.entry(key)
        for name, uri in outputs.items():
            artifacts.copy_atomic(uri, artifacts.join(entry, "outputs", name))
        artifacts.write_json_atomic(artifacts.join(entry, RESULT_FILE), {"result": result, "source": source})
