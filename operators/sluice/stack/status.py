"""What `sluice status` knows about a local stack: each component's health, each pool's load and workers, and
the faults around them (``sluice.stack.faults``). Health comes from the stack's own processes only: another
process answering a port says nothing about this stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import httpx

from sluice.platform import Pool
from sluice.stack import faults, services, workers
from sluice.stack.config import StackConfig
from sluice.stack.connections import engine
from sluice.stack.faults import ImportFailure, TaskEvent
from sluice.stack.home import StackHome
from sluice.stack.processes import Kind, Proc
from sluice.stack.state import StackState
from sluice.worker.report import PatchState

CORE = (Kind.API_SERVER, Kind.SCHEDULER, Kind.DAG_PROCESSOR, Kind.TRIGGERER)


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STARTING = "starting"
    WAITING = "waiting"  # on something else (the broker) before it can be judged
    DRAINING = "draining"  # a worker's warm shutdown
    STOPPED = "stopped"  # on purpose: a worker that drained
    DEAD = "dead"


@dataclass(frozen=True)
class ComponentHealth:
    """A component's health and, but for plain healthy or dead, what it is about: "starting: no ping reply yet"."""

    state: Health
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.state}: {self.detail}" if self.detail else str(self.state)


HEALTHY, DEAD = ComponentHealth(Health.HEALTHY), ComponentHealth(Health.DEAD)
# Worker health that is the autoscaler adding or retiring workers on purpose, not a fault.
SCALING = (Health.STARTING, Health.DRAINING, Health.STOPPED)


@dataclass
class PoolStatus:
    pool: Pool
    queued: int
    running: int
    desired: int
    workers: list[str]
    draining: list[str] = field(default_factory=list)


@dataclass
class ComponentStatus:
    name: str
    kind: Kind
    pid: int
    alive: bool
    health: ComponentHealth
    log: str
    restarts: int = 0
    last_exit: str = ""  # how its last run ended: this dead process's exit status when known, else the supervisor's
    patches: dict[str, PatchState] | None = None  # a running worker's, once it has reported them
    exit_status: str = ""  # a dead process's "killed by SIGKILL" / "exit code 1", where it could be known

    @property
    def ok(self) -> bool:
        """Healthy, or a worker the autoscaler is adding or retiring on purpose (not a fault)."""
        if self.health.state is Health.HEALTHY:
            return True
        return self.kind == Kind.WORKER and self.health.state in SCALING


@dataclass
class Status:
    config: StackConfig
    components: list[ComponentStatus]
    pools: list[PoolStatus]
    import_errors: list[ImportFailure] = field(default_factory=list)
    events: list[TaskEvent] = field(default_factory=list)  # recent faults.EVENTS, newest first
    broker_problem: str | None = None  # the broker does not answer: one line naming it
    database_problem: str | None = None  # the metadata database does not answer: one line naming it

    @property
    def stopped(self) -> bool:
        return not any(c.alive for c in self.components)

    @property
    def problems(self) -> list[str]:
        return [p for p in (self.broker_problem, self.database_problem) if p]

    @property
    def healthy(self) -> bool:
        return not self.stopped and not self.problems and all(c.ok for c in self.components)


def status(home: StackHome) -> Status:
    state = home.state()
    config = state.config
    alive = {proc.name: proc.alive() for proc in state.procs}
    # Workers are reached through the broker: when it does not answer, no ping can tell anything about them.
    broker_problem = faults.broker_problem(config.broker_url) if any(alive.values()) else None
    core = api_health(config, state.find(Kind.API_SERVER))
    live_workers = [p.worker_name for p in state.workers() if alive[p.name]]
    pongs = set() if broker_problem else workers.answering(config.broker_url, live_workers)
    exits = faults.exit_statuses(home.state_file, [proc for proc in state.procs if not alive[proc.name]])
    components = []
    for proc in state.procs:
        exit_status = exits.get(proc.name, "")
        components.append(
            ComponentStatus(
                proc.name,
                proc.kind,
                proc.pid,
                alive[proc.name],
                _health(proc, alive[proc.name], core, pongs, broker_problem),
                proc.log,
                proc.restarts,
                exit_status or proc.last_exit,
                workers.patches(home, proc) if alive[proc.name] and proc.kind == Kind.WORKER else None,
                exit_status=exit_status,
            )
        )
    if not any(c.alive for c in components):
        return Status(config, components, [])
    import sqlalchemy as sa

    import_errors, events = faults.dag_problems(config)
    try:
        pools, database_problem = pool_status(state), None
    except sa.exc.OperationalError as exc:  # cannot connect (a query that fails still raises)
        pools, database_problem = [], faults.database_problem(config.db_url, exc)
    return Status(config, components, pools, import_errors, events, broker_problem, database_problem)


def _health(
    proc: Proc, alive: bool, core: dict[Kind, ComponentHealth], pongs: set[str], broker_problem: str | None
) -> ComponentHealth:
    if not alive:
        return ComponentHealth(Health.STOPPED, "drained") if proc.draining else DEAD
    if proc.kind in CORE:
        return core.get(proc.kind, ComponentHealth(Health.STARTING))
    if proc.kind == Kind.WORKER:
        if proc.draining:
            return ComponentHealth(Health.DRAINING, "warm shutdown")
        if broker_problem:
            return ComponentHealth(Health.WAITING, "on the broker, which does not answer")
        return HEALTHY if proc.worker_name in pongs else ComponentHealth(Health.STARTING, "no ping reply yet")
    if proc.kind == Kind.REDIS and broker_problem:
        return ComponentHealth(Health.UNHEALTHY, "no reply to PING")
    return HEALTHY


def api_health(config: StackConfig, api: Proc | None) -> dict[Kind, ComponentHealth]:
    """The core components' health as our own api-server reports it; nothing while it does not run."""
    live = api.process() if api else None
    if live is None:
        return {}
    listening = services.listeners(config.api_port)
    ours = {live.pid, *(child.pid for child in live.children(recursive=True))}
    if listening and not listening & ours:
        who = services.holder(config.api_port)
        why = f"port {config.api_port} is answered by {who}, not this stack"
        return {Kind.API_SERVER: ComponentHealth(Health.UNHEALTHY, why)}
    try:
        body = httpx.get(f"{config.api_url}/api/v2/monitor/health", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return {Kind.API_SERVER: ComponentHealth(Health.STARTING, type(exc).__name__)}
    out = {Kind.API_SERVER: HEALTHY}
    for kind, key in (
        (Kind.SCHEDULER, "scheduler"),
        (Kind.TRIGGERER, "triggerer"),
        (Kind.DAG_PROCESSOR, "dag_processor"),
    ):
        reported = (body.get(key) or {}).get("status")
        out[kind] = (
            HEALTHY if reported == "healthy" else ComponentHealth(Health.STARTING, reported or "no heartbeat yet")
        )
    return out


def pool_status(state: StackState) -> list[PoolStatus]:
    """Per pool: its queued and running tasks (the metadata database), the workers it wants and has."""
    import sqlalchemy as sa

    from sluice.scaling import desired_replicas, pool_load_sql, pool_state_counts_sql

    result = []
    db = engine(state.config.db_url)
    try:
        with db.connect() as conn:
            for pool in state.config.platform().pools:
                counts: dict[str, int] = {
                    str(s): int(n) for s, n in conn.execute(sa.text(pool_state_counts_sql(pool))).all()
                }
                needed = conn.execute(sa.text(pool_load_sql(pool))).scalar()
                live = [p for p in state.workers(pool.name) if p.alive()]
                fixed = not (state.config.autoscale and pool.autoscaling.enabled)
                result.append(
                    PoolStatus(
                        pool=pool,
                        queued=int(counts.get("queued", 0)),
                        running=int(counts.get("running", 0)),
                        desired=1 if fixed else desired_replicas(needed, pool),
                        workers=[p.worker_name for p in live if not p.draining],
                        draining=[p.worker_name for p in live if p.draining],
                    )
                )
    finally:
        db.dispose()
    return result
