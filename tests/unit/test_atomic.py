"""sluice.atomic.write_atomic, the one temp-then-rename writer: whole files, unique temp names, the mode from
creation on; and the package's writers that go through it."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sluice import atomic
from sluice.stack.config import Secrets, write_password_file

VERSIONS = 4
WRITES = 60


def version(writer: int, n: int) -> bytes:
    """A version whose every byte says who wrote it, of a size that differs between writers (a mix shows)."""
    return json.dumps({"writer": writer, "n": n, "fill": str(writer) * (1000 + 5000 * writer)}).encode()


def write_many(path: str, writer: int) -> None:
    for n in range(WRITES):
        atomic.write_atomic(path, version(writer, n))


def whole(data: bytes) -> bool:
    try:
        found = json.loads(data)
    except ValueError:
        return False
    return data == version(found["writer"], found["n"])


def leftovers(folder: Path, target: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p != target)


def test_concurrent_writers_of_one_path_never_mix_and_leave_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(version(0, -1))
    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    writers = [context.Process(target=write_many, args=(str(target), w)) for w in range(1, VERSIONS + 1)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
    done.set()
    reader.join()
    assert [p.exitcode for p in writers] == [0] * VERSIONS
    assert seen and all(whole(data) for data in seen), "a reader saw a partial or mixed file"
    assert whole(target.read_bytes()) and json.loads(target.read_bytes())["n"] == WRITES - 1
    assert leftovers(tmp_path, target) == [], "every writer removed or renamed its own temp file"


def test_threads_writing_one_path_each_use_their_own_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    threads = [threading.Thread(target=write_many, args=(str(target), w)) for w in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert whole(target.read_bytes())
    assert leftovers(tmp_path, target) == []


@pytest.fixture
def modes_at_creation(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The permission bits of every file write_atomic creates, read from the open descriptor right after its
    creation, before a byte is written."""
    created: list[tuple[str, int]] = []
    real_open: Callable[..., int] = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT:
            created.append((os.fspath(path), stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "open", recording_open)
    return created


def test_a_secret_is_never_readable_by_others(tmp_path: Path, modes_at_creation: list[tuple[str, int]]) -> None:
    old = os.umask(0)  # the most permissive umask: the mode alone must keep others out
    try:
        target = atomic.write_atomic(tmp_path / "secret.json", '{"key": "s3cr3t"}', mode=atomic.SECRET)
    finally:
        os.umask(old)
    assert [mode for _, mode in modes_at_creation] == [0o600]
    assert ".secret.json.tmp-" in modes_at_creation[0][0], "created under a temp name, then renamed"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_stacks_secrets_and_password_file_are_created_owner_only(
    tmp_path: Path, modes_at_creation: list[tuple[str, int]]
) -> None:
    Secrets.load_or_create(tmp_path / "secrets.json")
    write_password_file(tmp_path, "pw")
    assert len(modes_at_creation) == 2
    assert all(mode & 0o077 == 0 for _, mode in modes_at_creation), modes_at_creation
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600


def test_concurrent_first_starts_agree_on_one_set_of_secrets(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    start = threading.Barrier(6)
    made: list[Secrets] = []

    def load() -> None:
        start.wait()
        made.append(Secrets.load_or_create(path))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 6 and all(secrets == made[0] for secrets in made), "the first writer's secrets win"
    assert Secrets.load_or_create(path) == made[0]
    assert leftovers(tmp_path, path) == []


def test_keeping_an_existing_file_refuses_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "kept"
    target.write_text("first")
    with pytest.raises(FileExistsError):
        atomic.write_atomic(target, "second", replace=False)
    assert target.read_text() == "first"
    assert leftovers(tmp_path, target) == []


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ports.json"
    target.write_text("old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path, target) == []
