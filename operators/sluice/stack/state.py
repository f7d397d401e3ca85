"""The stack's record of what it started, in ``<home>/stack.json``, changed only under a file lock.

``sluice up``, ``sluice down`` and the supervisor (a separate process) all edit it; the lock keeps their
read-modify-write cycles from losing each other's changes. The record is typed (``StackState``, ``Proc``) and
validated on every read; a record in the first format (before ``"format"``, each process's facts in an untyped
``extra`` map) is read as the current one, so a stack started by an earlier Sluice can still be seen and stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from sluice.atomic import write_atomic
from sluice.stack.config import StackConfig
from sluice.stack.errors import StackError
from sluice.stack.processes import Kind, Proc, Stopping

FORMAT = 2  # of stack.json; 1 is the format without this field (read by ``_from_format_1``)


@dataclass
class StackState:
    config: StackConfig
    procs: list[Proc] = field(default_factory=list)
    worker_serial: dict[str, int] = field(default_factory=dict)  # per pool: names are never reused
    format: int = FORMAT

    def find(self, name: str) -> Proc | None:
        return next((p for p in self.procs if p.name == name), None)

    def of_kind(self, kind: Kind) -> list[Proc]:
        return [p for p in self.procs if p.kind == kind]

    def workers(self, pool: str | None = None) -> list[Proc]:
        return [p for p in self.procs if p.worker is not None and (pool is None or p.worker.pool == pool)]

    def remove(self, proc: Proc) -> None:
        self.procs = [p for p in self.procs if p.name != proc.name]

    def next_worker_name(self, pool: str) -> str:
        self.worker_serial[pool] = self.worker_serial.get(pool, 0) + 1
        return f"{pool}-{self.worker_serial[pool]}"


_STATE = TypeAdapter(StackState)


class StateFile:
    def __init__(self, home: Path) -> None:
        self.path = home / "stack.json"
        self.lock_path = home / "stack.lock"

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> StackState:
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object expected, not {type(data).__name__}")
            found = data.get("format", 1)
            if found == 1:
                data = _from_format_1(data)
            elif found != FORMAT:
                raise ValueError(f"format {found!r}, and this Sluice reads formats 1 and {FORMAT}")
            return _STATE.validate_python(data)
        except (ValueError, KeyError, TypeError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
            why = _first_error(exc)
            raise StackError(
                f"cannot read the local stack's record {self.path} ({why}): if that stack still runs, stop it with "
                f"the Sluice that started it (`sluice down --home {self.path.parent}`); then remove the file, and "
                "`sluice up` starts afresh (data under that home is kept)"
            ) from None

    def write(self, state: StackState) -> None:
        write_atomic(self.path, _STATE.dump_json(state, indent=2))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def editing(self) -> Iterator[StackState]:
        """Read, let the caller change, write back: all under the lock."""
        with self.locked():
            state = self.read()
            yield state
            self.write(state)


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """The first format's record as the current one: each process's ``extra`` map becomes its typed fields."""
    return {**data, "format": FORMAT, "procs": [_proc_from_format_1(p) for p in data.get("procs", [])]}


def _proc_from_format_1(proc: dict[str, Any]) -> dict[str, Any]:
    extra = dict(proc.get("extra") or {})
    out = {k: v for k, v in proc.items() if k != "extra"}
    if proc.get("kind") == "worker":
        out["worker"] = {
            "name": extra["worker"],
            "pool": extra["pool"],
            "log_server_port": extra["log_server_port"],
            "grace": extra.get("grace", 60),
            "replaces": extra.get("replaces"),
        }
    if "port" in extra:
        out["port"] = extra["port"]
    out["restarts"] = extra.get("restarts", 0)
    out["last_exit"] = extra.get("last_exit", "")
    out["exit_status"] = extra.get("exit_status", "")
    if extra.get("draining"):
        out["stopping"] = Stopping.DRAIN.value
    elif extra.get("restarting"):
        out["stopping"] = Stopping.RESTART.value
    return out


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    if isinstance(exc, KeyError):
        return f"missing {exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
