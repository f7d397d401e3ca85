"""The stack's record of what it started, in ``<home>/stack.json``, changed only under a file lock.

``sluice up``, ``sluice down`` and the autoscaler (a separate process) all edit it; the lock keeps their
read-modify-write cycles from losing each other's changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.atomic import write_atomic
from sluice.stack.config import StackConfig
from sluice.stack.processes import Proc


@dataclass
class StackState:
    config: StackConfig
    procs: list[Proc] = field(default_factory=list)
    worker_serial: dict[str, int] = field(default_factory=dict)  # per pool: names are never reused

    def find(self, name: str) -> Proc | None:
        return next((p for p in self.procs if p.name == name), None)

    def of_kind(self, kind: str) -> list[Proc]:
        return [p for p in self.procs if p.kind == kind]

    def workers(self, pool: str | None = None) -> list[Proc]:
        return [p for p in self.of_kind("worker") if pool is None or p.extra.get("pool") == pool]

    def remove(self, proc: Proc) -> None:
        self.procs = [p for p in self.procs if p.name != proc.name]

    def next_worker_name(self, pool: str) -> str:
        self.worker_serial[pool] = self.worker_serial.get(pool, 0) + 1
        return f"{pool}-{self.worker_serial[pool]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "procs": [p.to_json() for p in self.procs],
            "worker_serial": self.worker_serial,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        return cls(
            config=StackConfig.model_validate(data["config"]),
            procs=[Proc.from_json(p) for p in data.get("procs", [])],
            worker_serial=dict(data.get("worker_serial", {})),
        )


class StateFile:
    def __init__(self, home: Path) -> None:
        self.path = home / "stack.json"
        self.lock_path = home / "stack.lock"

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> StackState:
        return StackState.from_json(json.loads(self.path.read_text()))

    def write(self, state: StackState) -> None:
        write_atomic(self.path, json.dumps(state.to_json(), indent=2))

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
