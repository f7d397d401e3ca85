"""The local stack as the CLI drives it: one object per stack home, over the modules that do the work.

``sluice.stack.lifecycle`` starts and stops it and its parts, ``sluice.stack.status`` judges its health,
``sluice.stack.faults`` says what went wrong, ``sluice.stack.workers`` asks its Celery workers; the record of what
runs is ``sluice.stack.state``'s, the processes are ``sluice.stack.processes``'.
"""

from __future__ import annotations

from typing import Any

from sluice.platform import Pool
from sluice.stack import lifecycle, status, workers
from sluice.stack.config import StackConfig
from sluice.stack.home import StackHome
from sluice.stack.lifecycle import Progress, quiet
from sluice.stack.processes import Proc
from sluice.stack.state import StackState
from sluice.stack.status import PoolStatus, Status
from sluice.worker.report import PatchState


class LocalStack(StackHome):
    # ---- lifecycle ------------------------------------------------------------------------------------
    def up(self, config: StackConfig, progress: Progress = quiet) -> StackState:
        """Start services (or use those that answer), Airflow's components, the pools' workers and the
        supervisor; return once every component is healthy."""
        return lifecycle.up(self, config, progress)

    def down(self, progress: Progress = quiet) -> list[tuple[str, str]]:
        """Stop what this stack started, workers warm (their running tasks finish), services last."""
        return lifecycle.down(self, progress)

    def wait_healthy(self, progress: Progress = quiet, timeout: float = lifecycle.HEALTH_TIMEOUT) -> Status:
        return lifecycle.wait_healthy(self, progress, timeout)

    def start_worker(self, pool: Pool) -> Proc:
        return lifecycle.start_worker(self, pool)

    def drain_worker(self, proc: Proc) -> None:
        lifecycle.drain_worker(self, proc)

    def forget_exited(self) -> list[Proc]:
        return lifecycle.forget_exited(self)

    def respawn(self, proc: Proc, config: StackConfig) -> Proc:
        return lifecycle.respawn(self, proc, config)

    # ---- status ---------------------------------------------------------------------------------------
    def status(self) -> Status:
        return status.status(self)

    def pool_status(self, state: StackState | None = None) -> list[PoolStatus]:
        return status.pool_status(state or self.state())

    # ---- its workers ----------------------------------------------------------------------------------
    def celery(self) -> Any:
        return workers.celery_app(self.state().config.broker_url)

    def busy_workers(self, names: list[str]) -> set[str] | None:
        return workers.busy(self.state().config.broker_url, names)

    def worker_patches(self, proc: Proc) -> dict[str, PatchState] | None:
        return workers.patches(self, proc)
