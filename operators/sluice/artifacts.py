"""Artifact store: fsspec URIs under ``{root}/{dag_id}/{run_id}/{task_id}/``.

A plain directory on a laptop, ``s3://`` (MinIO or any S3) on a cluster; the same functions serve both.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs


def join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *(p.strip("/") for p in parts)])


def task_prefix(root: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Where one task instance's outputs live; mapped instances get their own sub-prefix."""
    prefix = join(root, dag_id, run_id, task_id)
    return join(prefix, str(map_index)) if map_index >= 0 else prefix


def exists(uri: str) -> bool:
    fs, path = url_to_fs(uri)
    return bool(fs.exists(path))


def read_text(uri: str) -> str:
    with fsspec.open(uri, "r") as handle:
        text: str = handle.read()
    return text


def read_json(uri: str) -> Any:
    return json.loads(read_text(uri))


def _is_local(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return bool({"file", "local"} & set(protocols))


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """A reader never sees half a file: temp name + rename on a filesystem; one whole PUT on an
    object store (already atomic, and a rename there would be a second copy)."""
    fs, path = url_to_fs(uri)
    parent = path.rsplit("/", 1)[0]
    if not _is_local(fs):
        fs.pipe_file(path, data)
        return
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{path.rsplit('/', 1)[-1]}.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open(tmp, "wb") as handle:
            handle.write(data)
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def write_json_atomic(uri: str, value: Any) -> None:
    write_bytes_atomic(uri, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def remove_partials(prefix: str) -> list[str]:
    """Delete temp files a killed step left under its prefix (``.name.tmp-<uuid>``); returns them."""
    fs, path = url_to_fs(prefix)
    if not fs.exists(path):
        return []
    partials = [p for p in fs.find(path) if ".tmp-" in p.rsplit("/", 1)[-1]]
    for partial in partials:
        fs.rm(partial)
    return partials


def local_path(uri: str) -> str | None:
    """The filesystem path of a local artifact, for printing; None for remote stores."""
    fs, path = url_to_fs(uri)
    return path if _is_local(fs) else None
