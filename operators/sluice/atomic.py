"""Write a local file whole, or not at all: the one temp-then-rename writer of the package.

The bytes go to a temp file of a unique name in the target's folder (``.<name>.tmp-<random>``, the name
``sluice.artifacts.remove_partials`` sweeps), created with its final mode (a secret is 0600 from its first
instant, never world-readable), flushed to disk, then renamed onto the target. Two writers of the same path at
once each have their own temp file: a reader sees one whole version or the other, never a mix, and no temp
file is left behind, not even by a writer that fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET = 0o600  # the mode of a file only its owner may read
PUBLIC = 0o644  # the mode of any other file (the process umask still applies, as for open())


def temp_beside(path: str | os.PathLike[str]) -> str:
    """A fresh temp name next to ``path``: ``.<name>.tmp-<random>`` in the same folder."""
    parent, base = os.path.split(os.fspath(path))
    return os.path.join(parent, f".{base}.tmp-{secrets.token_hex(8)}")


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int = PUBLIC, replace: bool = True) -> Path:
    """Put ``data`` at ``path`` whole, with ``mode`` from the file's creation on (``SECRET`` for secrets).

    ``replace=False`` keeps an existing file: it raises ``FileExistsError`` instead (of two such writers, the
    first wins and the other reads what it wrote). Returns ``path``.
    """
    target = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    while True:
        tmp = temp_beside(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        except FileExistsError:  # a name another writer drew: draw again
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if the target exists: nothing is overwritten
        _sync_folder(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
