"""A versioned model registry in the artifact store, through fsspec (a directory, or s3://).

Layout under ``{artifact_root}/models/{name}/``::

    1/                  a published version: model.joblib, transformer.joblib, MODEL_CARD.md, roc.png, …
      _VERSION.json     written last: a version without it is incomplete and never made current
    2/
    current             pointer: {"version": "2", ...}; switched atomically, only to a complete version

Rules: a version is written completely before it is published and is never overwritten; ``current``
flips only after the new version is complete. Locally the version is written to ``.{version}.tmp-<uuid>/``
and renamed into place (one atomic rename; a leftover temp directory is never a version). On an object
store there is no rename: objects go straight to ``{version}/`` with ``_VERSION.json`` last, which is
what makes the version complete, and ``current`` is one PUT. Readers (``sluice.registry``, the ``score``
step) only follow ``current``, so they never see a version being written.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from fsspec.core import url_to_fs

from sluice_steps.contract import StepError, atomic_write

MARKER = "_VERSION.json"
POINTER = "current"


def _is_local(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return bool({"file", "local"} & set(protocols))


def _join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/"), *(p.strip("/") for p in parts[1:])])


def _fs(base_uri: str) -> tuple[Any, str]:
    """The filesystem and path of ``base_uri``, with no listing remembered from before.

    fsspec reuses filesystem instances, and s3fs caches listings in them: once a process had listed the
    registry, a version another writer published afterwards looked absent, and ``publish_version``
    overwrote it. Every registry decision reads the store itself (a no-op on a local directory)."""
    fs, path = url_to_fs(base_uri)
    fs.invalidate_cache()
    return fs, path


class VersionExists(StepError):
    """Publishing would overwrite a published (or partly written) version: refused."""


def version_names(base_uri: str) -> list[str]:
    """Every version directory (complete or not, temp directories excluded), oldest first."""
    fs, base = _fs(base_uri)
    if not fs.exists(base):
        return []
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)]
    names = [n for n in names if n != POINTER and not n.startswith((".", "_")) and fs.isdir(_join(base, n))]
    return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))


def next_version(base_uri: str) -> str:
    """One above the highest numbered version, incomplete ones included (they are never reused)."""
    numbers = [int(n) for n in version_names(base_uri) if n.isdigit()]
    return str(max(numbers, default=0) + 1)


def read_version(base_uri: str, version: str) -> dict[str, Any] | None:
    """The version's metadata (its ``_VERSION.json``), or None while it is incomplete or absent."""
    fs, base = _fs(base_uri)
    marker = _join(base, version, MARKER)
    if not fs.exists(marker):
        return None
    metadata: dict[str, Any] = json.loads(fs.cat_file(marker))
    return metadata


def read_current(base_uri: str) -> dict[str, Any] | None:
    fs, base = _fs(base_uri)
    pointer = _join(base, POINTER)
    if not fs.exists(pointer):
        return None
    current: dict[str, Any] = json.loads(fs.cat_file(pointer))
    return current


def publish_version(
    base_uri: str,
    version: str,
    files: dict[str, bytes],
    metadata: dict[str, Any],
) -> str:
    """Write ``files`` + ``_VERSION.json`` as version ``version``; refuse if that version exists at all."""
    if not version or "/" in version or version.startswith((".", "_")) or version == POINTER:
        raise StepError(f"param 'version': {version!r} is not a usable version name (no '/', not '.'/'_' first)")
    fs, base = _fs(base_uri)
    target = _join(base, version)
    if fs.exists(target):
        raise VersionExists(
            f"version {version!r} of {base_uri} already exists; published versions are never overwritten "
            "(leave 'version' unset to publish the next one)"
        )
    marker = json.dumps({**metadata, "version": version, "files": sorted(files)}, indent=2, sort_keys=True)
    if not _is_local(fs):
        for name, data in sorted(files.items()):
            fs.pipe_file(_join(target, name), data)
        fs.pipe_file(_join(target, MARKER), marker.encode())  # last: the version is complete from here
        return _join(base_uri, version)
    fs.makedirs(base, exist_ok=True)
    tmp = _join(base, f".{version}.tmp-{uuid.uuid4().hex}")
    fs.makedirs(tmp, exist_ok=False)
    try:
        for name, data in sorted(files.items()):
            with fs.open(_join(tmp, name), "wb") as handle:
                handle.write(data)
        with fs.open(_join(tmp, MARKER), "wb") as handle:
            handle.write(marker.encode())
        if os.path.exists(target):  # someone published this version meanwhile
            raise VersionExists(f"version {version!r} of {base_uri} was published meanwhile; not overwritten")
        try:
            os.rename(tmp, target)  # atomic; refuses a non-empty target (ENOTEMPTY)
        except OSError as exc:
            raise VersionExists(f"version {version!r} of {base_uri} could not be published: {exc}") from None
    finally:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
    return _join(base_uri, version)


def set_current(base_uri: str, version: str) -> dict[str, Any]:
    """Point ``current`` at a complete version: one atomic write (temp + rename, or one PUT)."""
    metadata = read_version(base_uri, version)
    if metadata is None:
        raise StepError(f"version {version!r} of {base_uri} is not complete (no {MARKER}); current is unchanged")
    pointer = {
        "version": version,
        "uri": _join(base_uri, version),
        "switched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_sha256": metadata.get("model_sha256"),
    }
    atomic_write(_join(base_uri, POINTER), json.dumps(pointer, indent=2, sort_keys=True).encode())
    return pointer
