"""Where a local stack lives: its home folder, its record (``stack.json``), its secrets, and the environment its
components get. The lifecycle, status and fault modules all start from one of these."""

from __future__ import annotations

from pathlib import Path

from sluice.stack.config import Secrets, StackConfig, airflow_env
from sluice.stack.errors import StackError
from sluice.stack.processes import Proc
from sluice.stack.state import StackState, StateFile


class StackHome:
    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.state_file = StateFile(self.home)

    def state(self) -> StackState:
        if not self.state_file.exists():
            raise StackError(f"no local stack in {self.home}: start one with `sluice up`")
        return self.state_file.read()

    def secrets(self) -> Secrets:
        return Secrets.load_or_create(self.home / "secrets.json")

    def env(self, config: StackConfig | None = None) -> dict[str, str]:
        return airflow_env(config or self.state().config, self.home, self.secrets())

    def running(self) -> list[Proc]:
        if not self.state_file.exists():
            return []
        return [p for p in self.state().procs if p.alive()]

    def log(self, name: str) -> Path:
        return self.home / "logs" / name

    def patch_report(self, worker: str) -> Path:
        """Where a worker writes which Sluice patches it runs (``sluice.worker.report``)."""
        return self.log(f"worker-{worker}.patches.json")
