"""Starting and stopping a local stack and its parts: ``up`` (services, Airflow's components, one or more workers
per pool, the supervisor), a worker more or fewer (the autoscaler), a dead component again (the supervisor),
and ``down``. Every process started is in the stack's record before anyone else can look for it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sluice.embedded import write_local_settings
from sluice.platform import Pool
from sluice.stack import services
from sluice.stack.config import StackConfig, airflow_command, renew_port, stable_ports, write_password_file
from sluice.stack.connections import redacted
from sluice.stack.errors import StackError
from sluice.stack.home import StackHome
from sluice.stack.processes import Kind, Proc, Stopping, Worker, clear_group, signal_proc, spawn, stop
from sluice.stack.state import StackState
from sluice.stack.status import CORE, Health, Status, status
from sluice.stack.workers import celery_hostname
from sluice.worker import report

Progress = Callable[[str], None]
HEALTH_TIMEOUT = 240.0
# The supervisor first, so that nothing it watches is restarted while the stack stops.
STOP_ORDER = (
    Kind.SUPERVISOR,
    Kind.WORKER,
    Kind.SCHEDULER,
    Kind.TRIGGERER,
    Kind.DAG_PROCESSOR,
    Kind.API_SERVER,
    Kind.REDIS,
    Kind.POSTGRES,
)
CORE_STOP_TIMEOUT = 60.0  # seconds `sluice down` waits for anything but a worker (which has its pool's grace)


def quiet(_: str) -> None:
    pass


# ---- up ----------------------------------------------------------------------------------------------
def up(home: StackHome, config: StackConfig, progress: Progress = quiet) -> StackState:
    home.home.mkdir(parents=True, exist_ok=True)
    alive = home.running()
    if alive:
        names = ", ".join(p.name for p in alive)
        raise StackError(f"a local stack is already running in {home.home} ({names}): `sluice status` or `sluice down`")
    platform = config.platform()  # a bad platform file fails here, before anything starts
    _check_ports(home, config)
    config = config.model_copy()
    state = StackState(config=config)
    if home.state_file.exists():
        state.worker_serial = home.state_file.read().worker_serial
    with home.state_file.locked():
        home.state_file.write(state)
    base_env = home.env(config)

    config.db_url = _database(home, config.db_url, state, base_env, progress)
    config.broker_url = _broker(home, config.broker_url, state, base_env, progress)
    _save(home, state)
    env = home.env(config)
    airflow_home = Path(env["AIRFLOW_HOME"])
    airflow_home.mkdir(parents=True, exist_ok=True)
    write_local_settings(airflow_home)
    write_password_file(airflow_home, home.secrets().admin_password)

    progress("migrating the metadata database")
    migrated = subprocess.run([*airflow_command(), "db", "migrate"], env=env, capture_output=True, text=True)
    if migrated.returncode:
        raise StackError(f"`airflow db migrate` failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-2000:]}")
    from sluice.scaling import ensure_index

    ensure_index(config.db_url)

    for kind in CORE:
        progress(f"starting {kind}")
        state.procs.append(_spawn_core(home, kind, env, config))
        _save(home, state)
    for pool in platform.pools:
        count = pool.autoscaling.min_replicas if config.autoscale and pool.autoscaling.enabled else 1
        for _ in range(count):
            progress(f"starting a worker for pool {pool.name}")
            start_worker(home, pool)
    progress("starting the supervisor" + (" and autoscaler" if config.autoscale else ""))
    with home.state_file.editing() as current:
        argv = [sys.executable, "-m", "sluice.stack.supervisor", str(home.home)]
        current.procs.append(spawn("supervisor", Kind.SUPERVISOR, argv, env, home.log("supervisor.log")))
    wait_healthy(home, progress)
    return home.state()


def _check_ports(home: StackHome, config: StackConfig) -> None:
    """Refuse to start next to something that holds our ports: a component that dies on "address in use"
    while another process answers its port would look healthy."""
    if not services.port_free(config.api_host, config.api_port):
        raise StackError(
            f"port {config.api_port} on {config.api_host} is in use ({services.holder(config.api_port)}): "
            "stop that process, or start with --api-port set to a free port"
        )
    for name, port in stable_ports(home.home).items():
        if not services.port_free("0.0.0.0", port):
            renew_port(home.home, name)  # chosen by the stack, so another free one will do


def _save(home: StackHome, state: StackState) -> None:
    with home.state_file.locked():
        current = home.state_file.read()
        # workers are added by start_worker under the lock: keep theirs
        keep = [p for p in current.procs if p.name not in {q.name for q in state.procs}]
        state.procs = [*state.procs, *keep]
        state.worker_serial = {**state.worker_serial, **current.worker_serial}
        home.state_file.write(state)


@dataclass(frozen=True)
class _Server:
    """A service the stack starts itself where none answers at the URL it was given."""

    what: str  # as the user knows it: PostgreSQL, Redis
    option: str  # the `sluice up` option that names its URL
    folder: str  # its data under <home>/services/
    start: Callable[[Path, int, dict[str, str]], services.Endpoint]


_POSTGRES = _Server("PostgreSQL", "--db-url", "postgres", services.start_postgres)
_REDIS = _Server("Redis", "--broker-url", "redis", services.start_redis)


def _database(home: StackHome, url: str, state: StackState, env: dict[str, str], progress: Progress) -> str:
    if services.postgres_answers(url):
        services.ensure_database(url)
        return url
    found = _throwaway(home, state, env, progress, _POSTGRES, url, state.config.fallback_db)
    db_url = services.with_database(found.url, services.database_name(url) or "sluice")
    services.ensure_database(db_url)
    return db_url


def _broker(home: StackHome, url: str, state: StackState, env: dict[str, str], progress: Progress) -> str:
    if services.redis_answers(url):
        return url
    return _throwaway(home, state, env, progress, _REDIS, url, state.config.fallback_broker).url


def _throwaway(
    home: StackHome,
    state: StackState,
    env: dict[str, str],
    progress: Progress,
    server: _Server,
    url: str,
    allowed: bool,
) -> services.Endpoint:
    """A server of our own where none answers at the URL given (allowed only when that URL was not passed
    explicitly: a stack must not silently ignore the database or broker its user named)."""
    if not allowed:
        raise StackError(
            f"no {server.what} answers at {redacted(url)} ({server.option}): start it or fix the URL; "
            f"without {server.option}, `sluice up` starts a throwaway server when none answers"
        )
    progress(f"no {server.what} answers at {url.split('@')[-1]}: starting a throwaway server")
    endpoint = server.start(home.home / "services" / server.folder, services.free_port(), env)
    if endpoint.proc is not None:
        state.procs.append(endpoint.proc)
    return endpoint


def _spawn_core(home: StackHome, kind: Kind, env: dict[str, str], config: StackConfig) -> Proc:
    argv = [*airflow_command(), kind.value]
    if kind is Kind.API_SERVER:
        argv += ["--host", config.api_host, "--port", str(config.api_port), "--workers", "1"]
    return spawn(kind.value, kind, argv, env, home.log(f"{kind}.log"), cwd=home.home)


def wait_healthy(home: StackHome, progress: Progress = quiet, timeout: float = HEALTH_TIMEOUT) -> Status:
    """Until every running component is healthy (a draining worker aside); a core component or service that
    exits meanwhile ends the wait with its exit status and its log."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        current = status(home)
        dead = [c for c in current.components if not c.alive and c.kind != Kind.WORKER]
        if dead:
            how = f" ({dead[0].exit_status})" if dead[0].exit_status else ""
            raise StackError(f"{dead[0].name} exited during start-up{how}; see {dead[0].log}")
        waiting = [c for c in current.components if c.alive and c.health.state not in (Health.HEALTHY, Health.DRAINING)]
        if not waiting:
            return current
        summary = ", ".join(f"{c.name} ({c.health})" for c in waiting)
        if summary != last:
            progress(f"waiting for {summary}")
            last = summary
        if time.monotonic() > deadline:
            raise StackError(f"not healthy after {timeout:.0f} s: {summary}; logs in {home.log('')}")
        time.sleep(1)


# ---- workers -----------------------------------------------------------------------------------------
def start_worker(home: StackHome, pool: Pool) -> Proc:
    """One Celery worker for ``pool``: its queues, its concurrency, its own log-server port."""
    with home.state_file.editing() as state:
        proc = _spawn_worker(home, state.config, pool, state.next_worker_name(pool.name))
        state.procs.append(proc)
    return proc


def _spawn_worker(home: StackHome, config: StackConfig, pool: Pool, name: str, replaces: str | None = None) -> Proc:
    env = home.env(config)
    port = services.free_port()
    patch_report = home.patch_report(name)
    patch_report.unlink(missing_ok=True)  # a restarted worker's patches are its own, not its predecessor's
    env.update(
        {
            "SLUICE_WORKER_NAME": name,
            "SLUICE_POOL": pool.name,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port),
            report.ENV: str(patch_report),  # sluice.worker.patches writes it when the worker starts
        }
    )
    argv = [*airflow_command(), "celery", "worker", "--queues", ",".join(pool.queues)]
    argv += ["--concurrency", str(pool.concurrency), "--celery-hostname", celery_hostname(name)]
    worker = Worker(name, pool.name, port, float(pool.termination_grace_period_seconds), replaces)
    return spawn(f"worker {name}", Kind.WORKER, argv, env, home.log(f"worker-{name}.log"), cwd=home.home, worker=worker)


def drain_worker(home: StackHome, proc: Proc) -> None:
    """Warm shutdown: the worker stops taking tasks, finishes its running ones, then exits."""
    with home.state_file.editing() as state:
        found = state.find(proc.name)
        if found:
            found.stopping = Stopping.DRAIN
    signal_proc(proc, signal.SIGTERM)


def forget_exited(home: StackHome) -> list[Proc]:
    """Drop workers that exited after a warm shutdown from the record (the supervisor restarts the rest)."""
    with home.state_file.editing() as state:
        gone = [p for p in state.workers() if p.draining and not p.alive()]
        for proc in gone:
            state.remove(proc)
    return gone


# ---- a dead component again ------------------------------------------------------------------------
def respawn(home: StackHome, proc: Proc, config: StackConfig) -> Proc:
    """Start a component that died again, with what is left of its old process group killed first; the
    caller records it in the state. Services and core components come back as they were (same name,
    port, data). A worker comes back as a new worker of its pool (``<pool>-<n+1>``, as a Deployment's new
    pod gets a new name), so task instances' hostnames keep telling which worker process ran a try. The
    supervision history (restarts, last exit) carries over."""
    clear_group(proc)
    if proc.kind in CORE:
        new = _spawn_core(home, proc.kind, home.env(config), config)
    elif proc.worker is not None:
        pool = _pool(config, proc.worker.pool)
        with home.state_file.editing() as state:
            name = state.next_worker_name(pool.name)
        new = _spawn_worker(home, config, pool, name, replaces=proc.worker.name)
    elif proc.kind in (Kind.REDIS, Kind.POSTGRES) and proc.port is not None:
        start = services.start_redis if proc.kind is Kind.REDIS else services.start_postgres
        started = start(Path(proc.log).parent / proc.kind, proc.port, home.env(config)).proc
        if started is None:
            raise StackError(f"{proc.name} started again but no process of ours answers on port {proc.port}")
        new = started
    else:
        raise StackError(f"no way to restart {proc.kind} {proc.name}")
    new.restarts, new.last_exit = proc.restarts, proc.last_exit
    return new


def _pool(config: StackConfig, name: str) -> Pool:
    found = next((p for p in config.platform().pools if p.name == name), None)
    if found is None:
        raise StackError(f"pool {name!r} is no longer in the platform definition: `sluice down`, then `sluice up`")
    return found


# ---- down --------------------------------------------------------------------------------------------
def down(home: StackHome, progress: Progress = quiet) -> list[tuple[str, str]]:
    """Stop what this stack started, workers warm (their running tasks finish), services last."""
    if not home.state_file.exists():
        return []
    outcomes = []
    for kind in STOP_ORDER:
        procs = home.state().of_kind(kind)
        sig = services.STOP_SIGNAL.get(kind, signal.SIGTERM)
        signalled = {proc.name for proc in procs if signal_proc(proc, sig)}  # all at once, then wait
        spare = frozenset(p.pid for p in home.state().procs)
        for proc in procs:
            progress(f"stopping {proc.name}")
            timeout = proc.worker.grace if proc.worker is not None else CORE_STOP_TIMEOUT
            outcomes.append((proc.name, stop(proc, sig, timeout, signalled=proc.name in signalled, spare=spare)))
        with home.state_file.editing() as state:
            for proc in procs:
                state.remove(proc)
        if kind is Kind.WORKER:
            # Their tasks have finished (warm stop); what is left is a step container no task owns any more.
            from sluice.launchers.container import remove_for_home

            removed = remove_for_home(home.home)
            if removed:
                outcomes.append(("step containers", f"removed {len(removed)}: {', '.join(removed)}"))
            from sluice.launchers.warm import stop_runners

            if stop_runners(home.home):  # no step runs any more: the warm runner need not idle out its timeout
                outcomes.append(("warm step runner", "stopped"))
    return outcomes
