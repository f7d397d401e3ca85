"""Artifact store: fsspec URIs under ``{root}/{dag_id}/{run_id}/{task_id}/``.

A plain directory on a laptop, ``s3://`` (MinIO or any S3) on a cluster; the same functions serve both.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from sluice.atomic import temp_beside, write_atomic


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
    write_atomic(path, data)


def copy_atomic(src: str, dst: str) -> None:
    """Copy an artifact to another URI without holding it in memory (shards run to GBs), landing it whole.

    On one filesystem: a hard link under a temp name, renamed onto the target (no bytes copied; artifacts are
    only ever replaced by a rename, never changed in place, so two names may share the file), or a copy where
    links are refused (another device). On one object store: its server-side copy (S3 CopyObject: the object
    appears whole, and no byte passes through this process). Across stores: streamed, the upload completed
    only when the whole file is through.
    """
    src_fs, src_path = url_to_fs(src)
    dst_fs, dst_path = url_to_fs(dst)
    if _is_local(src_fs) and _is_local(dst_fs):
        os.makedirs(dst_path.rpartition("/")[0], exist_ok=True)
        tmp = temp_beside(dst_path)
        try:
            try:
                os.link(src_path, tmp)
            except OSError:
                shutil.copyfile(src_path, tmp)
            os.replace(tmp, dst_path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return
    if type(src_fs) is type(dst_fs) and src_fs.storage_options == dst_fs.storage_options:
        src_fs.copy(src_path, dst_path)
        return
    writer = dst_fs.open(dst_path, "wb")
    try:
        with src_fs.open(src_path, "rb") as reader:
            shutil.copyfileobj(reader, writer, 1 << 22)
    except BaseException:
        writer.discard()  # abort the upload: nothing appears at dst
        writer.closed = True
        raise
    writer.close()


def write_json_atomic(uri: str, value: Any) -> None:
    write_bytes_atomic(uri, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def remove_partials(prefix: str) -> list[str]:
    """Delete temp files a killed step left under its prefix (``.name.tmp-<random>``); returns them."""
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
