"""The local stack's autoscaler: what KEDA + the HPA do for the chart's worker Deployments, for local workers.

Same numbers as the cluster: each pool's load comes from ``sluice.scaling.pool_load_sql`` (the query the
chart's ScaledObject runs) clamped by ``desired_replicas``; scale-up is immediate, scale-in waits for the
pool's stabilization window (its cooldown period before going to zero) and removes at most
``podsPerPeriod`` workers per ``periodSeconds``. Unlike a ReplicaSet, it can see which worker is idle, so it
stops idle workers only, and with a warm shutdown.

``sluice up --autoscale`` runs it inside the stack's supervisor process (``sluice.stack.supervisor``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluice import compat
from sluice.platform import Pool
from sluice.scaling import desired_replicas, pool_load_sql
from sluice.stack import connections

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from sluice.stack.local import LocalStack

log = logging.getLogger("sluice.supervisor.autoscaler")


@dataclass
class PoolMemory:
    """What the autoscaler remembers about a pool between polls."""

    next_poll: float = 0.0
    low_since: float | None = None  # since when fewer workers were wanted than run
    next_scale_in: float = 0.0


@dataclass
class Decision:
    desired: int
    start: int = 0
    stop: list[str] = field(default_factory=list)
    reason: str = ""


def decide(
    pool: Pool, needed: float | None, workers: list[str], busy: set[str] | None, now: float, memory: PoolMemory
) -> Decision:
    """Pure scaling rule for one pool; ``busy`` is None when the workers could not be inspected."""
    desired = desired_replicas(needed, pool)
    actual = len(workers)
    if desired > actual:
        memory.low_since = None
        return Decision(desired, start=desired - actual, reason=f"load {needed or 0} needs {desired}, running {actual}")
    if desired == actual:
        memory.low_since = None
        return Decision(desired)
    if memory.low_since is None:
        memory.low_since = now
    scaling = pool.autoscaling
    window = scaling.cooldown_period if desired == 0 else scaling.scale_down.stabilization_window_seconds
    if now - memory.low_since < window:
        return Decision(desired, reason=f"scale-in to {desired} waits {window - (now - memory.low_since):.0f} s more")
    if now < memory.next_scale_in:
        return Decision(desired, reason="scale-in paced: one period has not passed")
    if busy is None:
        return Decision(desired, reason="scale-in postponed: not every worker answered the inspection")
    idle = [w for w in workers if w not in busy]
    count = min(actual - desired, scaling.scale_down.pods_per_period, len(idle))
    if count == 0:
        return Decision(desired, reason="scale-in postponed: every worker is running a task")
    memory.next_scale_in = now + scaling.scale_down.period_seconds
    # newest first: the oldest workers have the warmest caches
    victims = sorted(idle, key=lambda w: int(w.rsplit("-", 1)[-1]), reverse=True)[:count]
    return Decision(desired, stop=victims, reason=f"load {needed or 0} needs {desired}, running {actual}")


class Autoscaler:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.memory: dict[str, PoolMemory] = {}

    def running_on(self, conn: Connection, names: list[str]) -> set[str]:
        """Workers that the metadata DB says are running a task (the second opinion on idleness)."""
        import sqlalchemy as sa

        if not names:
            return set()
        query = sa.text(
            "SELECT DISTINCT hostname FROM task_instance WHERE state = 'running' AND hostname IN :names"
        ).bindparams(sa.bindparam("names", expanding=True))
        rows = conn.execute(query, {"names": names}).all()
        return {str(row[0]) for row in rows}

    def poll_once(self, now: float) -> None:
        import sqlalchemy as sa

        self.stack.forget_exited()
        state = self.stack.state()
        engine = connections.engine(state.config.db_url)
        try:
            with engine.connect() as conn:
                if compat.pool_load_problem(conn) is not None:
                    return  # every pool stays at its size; the warning (once per process) says why
                for pool in state.config.platform().pools:
                    if not pool.autoscaling.enabled:
                        continue
                    memory = self.memory.setdefault(pool.name, PoolMemory())
                    if now < memory.next_poll:
                        continue
                    memory.next_poll = now + pool.autoscaling.polling_interval
                    needed = conn.execute(sa.text(pool_load_sql(pool))).scalar()
                    serving = [p for p in state.workers(pool.name) if p.alive() and not p.draining]
                    names = [p.worker_name for p in serving]
                    busy: set[str] | None = None
                    if len(names) > desired_replicas(needed, pool):
                        busy = self.stack.busy_workers(names)
                        if busy is not None:
                            busy |= self.running_on(conn, names)
                    decision = decide(pool, float(needed) if needed is not None else None, names, busy, now, memory)
                    if decision.reason and (decision.start or decision.stop):
                        log.info("pool %s: %s", pool.name, decision.reason)
                    for _ in range(decision.start):
                        proc = self.stack.start_worker(pool)
                        log.info("pool %s: started worker %s (pid %s)", pool.name, proc.worker_name, proc.pid)
                    for name in decision.stop:
                        proc = next(p for p in serving if p.worker_name == name)
                        log.info("pool %s: idle worker %s gets a warm shutdown", pool.name, name)
                        self.stack.drain_worker(proc)
        finally:
            engine.dispose()
