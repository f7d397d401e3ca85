"""Start, inspect and stop the local stack; the CLI and the tests drive this class."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from sluice import compat
from sluice.checks import error_location
from sluice.embedded import write_local_settings
from sluice.platform import Pool
from sluice.runs import write_demo_data
from sluice.stack import services
from sluice.stack.config import (
    Secrets,
    StackConfig,
    airflow_command,
    airflow_env,
    renew_port,
    stable_ports,
    write_password_file,
)
from sluice.stack.errors import StackError
from sluice.stack.processes import Proc, clear_group, signal_proc, spawn, stop
from sluice.stack.state import StackState, StateFile
from sluice.worker import report

Progress = Callable[[str], None]
CORE = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_TIMEOUT = 240.0
# The supervisor first, so that nothing it watches is restarted while the stack stops.
STOP_ORDER = (
    "supervisor",
    "autoscaler",
    "worker",
    "scheduler",
    "triggerer",
    "dag-processor",
    "api-server",
    "redis",
    "postgres",
)
# Task-instance events the scheduler records that explain a failed or re-queued try (`sluice status` shows them).
EVENTS = ("heartbeat timeout", "stuck in queued reschedule", "stuck in queued tries exceeded", "state mismatch")
BROKER_TIMEOUT = 1.0  # seconds `sluice status` waits for the broker's PING reply
DB_CONNECT_TIMEOUT = 5  # seconds `sluice status` waits to connect to the metadata database


def _quiet(_: str) -> None:
    pass


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
    kind: str
    pid: int
    alive: bool
    health: str  # healthy | unhealthy | starting | draining | stopped | dead, with a reason after a colon
    log: str
    restarts: int = 0
    last_exit: str = ""  # how its last run ended: this dead process's exit status when known, else the supervisor's
    patches: dict[str, str] | None = None  # a worker's: patch → active | off | not installed: why
    exit_status: str = ""  # a dead process's "killed by SIGKILL" / "exit code 1", where it could be known

    @property
    def ok(self) -> bool:
        """Healthy, or a worker the autoscaler is adding or retiring on purpose (not a fault)."""
        if self.health == "healthy":
            return True
        return self.kind == "worker" and self.health.startswith(("starting:", "draining:", "stopped: drained"))


@dataclass
class Status:
    config: StackConfig
    components: list[ComponentStatus]
    pools: list[PoolStatus]
    import_errors: list[tuple[str, str]] = field(default_factory=list)  # (file[:line], last line of the error)
    events: list[dict[str, str]] = field(default_factory=list)  # recent EVENTS, newest first
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


class LocalStack:
    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.state_file = StateFile(self.home)

    # ---- what the stack is -------------------------------------------------------------------
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

    # ---- up --------------------------------------------------------------------------------------
    def up(self, config: StackConfig, progress: Progress = _quiet) -> StackState:
        self.home.mkdir(parents=True, exist_ok=True)
        alive = self.running()
        if alive:
            names = ", ".join(p.name for p in alive)
            raise StackError(
                f"a local stack is already running in {self.home} ({names}): `sluice status` or `sluice down`"
            )
        platform = config.platform()  # a bad platform file fails here, before anything starts
        self._check_ports(config)
        config = config.model_copy()
        state = StackState(config=config)
        if self.state_file.exists():
            state.worker_serial = self.state_file.read().worker_serial
        with self.state_file.locked():
            self.state_file.write(state)
        base_env = self.env(config)

        config.db_url = self._database(config.db_url, state, base_env, progress)
        config.broker_url = self._broker(config.broker_url, state, base_env, progress)
        self._save(state)
        env = self.env(config)
        airflow_home = Path(env["AIRFLOW_HOME"])
        airflow_home.mkdir(parents=True, exist_ok=True)
        write_local_settings(airflow_home)
        write_password_file(airflow_home, self.secrets().admin_password)
        progress("writing the example pipelines' demo sources")
        write_demo_data(self.home / "demo-data")  # where the example DAGs look: $SLUICE_HOME/demo-data

        progress("migrating the metadata database")
        migrated = subprocess.run([*airflow_command(), "db", "migrate"], env=env, capture_output=True, text=True)
        if migrated.returncode:
            raise StackError(f"`airflow db migrate` failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-2000:]}")
        from sluice.scaling import ensure_index

        ensure_index(config.db_url)

        for kind in CORE:
            progress(f"starting {kind}")
            state.procs.append(self._spawn_core(kind, env, config))
            self._save(state)
        for pool in platform.pools:
            count = pool.autoscaling.min_replicas if config.autoscale and pool.autoscaling.enabled else 1
            for _ in range(count):
                progress(f"starting a worker for pool {pool.name}")
                self.start_worker(pool)
        progress("starting the supervisor" + (" and autoscaler" if config.autoscale else ""))
        with self.state_file.editing() as current:
            current.procs.append(
                spawn(
                    "supervisor",
                    "supervisor",
                    [sys.executable, "-m", "sluice.stack.supervisor", str(self.home)],
                    env,
                    self.home / "logs" / "supervisor.log",
                )
            )
        self.wait_healthy(progress)
        return self.state()

    def _check_ports(self, config: StackConfig) -> None:
        """Refuse to start next to something that holds our ports: a component that dies on "address in use"
        while another process answers its port would look healthy."""
        if not services.port_free(config.api_host, config.api_port):
            raise StackError(
                f"port {config.api_port} on {config.api_host} is in use ({services.holder(config.api_port)}): "
                "stop that process, or start with --api-port set to a free port"
            )
        for name, port in stable_ports(self.home).items():
            if not services.port_free("0.0.0.0", port):
                renew_port(self.home, name)  # chosen by the stack, so another free one will do

    def _save(self, state: StackState) -> None:
        with self.state_file.locked():
            current = self.state_file.read()
            # workers and the autoscaler are added by start_worker under the lock: keep theirs
            keep = [p for p in current.procs if p.name not in {q.name for q in state.procs}]
            state.procs = [*state.procs, *keep]
            state.worker_serial = {**state.worker_serial, **current.worker_serial}
            self.state_file.write(state)

    def _database(self, url: str, state: StackState, env: dict[str, str], progress: Progress) -> str:
        if services.postgres_answers(url):
            services.ensure_database(url)
            return url
        if not state.config.fallback_db:
            raise StackError(
                f"no PostgreSQL answers at {_redacted(url)} (--db-url): start it or fix the URL; "
                "without --db-url, `sluice up` starts a throwaway server when none answers"
            )
        progress(f"no PostgreSQL answers at {url.split('@')[-1]}: starting a throwaway server")
        endpoint = services.start_postgres(self.home / "services" / "postgres", services.free_port(), env)
        state.procs.append(endpoint.proc)  # type: ignore[arg-type]
        db_url = services.with_database(endpoint.url, services.database_name(url) or "sluice")
        services.ensure_database(db_url)
        return db_url

    def _broker(self, url: str, state: StackState, env: dict[str, str], progress: Progress) -> str:
        if services.redis_answers(url):
            return url
        if not state.config.fallback_broker:
            raise StackError(
                f"no Redis answers at {_redacted(url)} (--broker-url): start it or fix the URL; "
                "without --broker-url, `sluice up` starts a throwaway server when none answers"
            )
        progress(f"no Redis answers at {url}: starting a throwaway server")
        endpoint = services.start_redis(self.home / "services" / "redis", services.free_port(), env)
        state.procs.append(endpoint.proc)  # type: ignore[arg-type]
        return endpoint.url

    def _spawn_core(self, kind: str, env: dict[str, str], config: StackConfig) -> Proc:
        argv = [*airflow_command(), kind]
        if kind == "api-server":
            argv += ["--host", config.api_host, "--port", str(config.api_port), "--workers", "1"]
        return spawn(kind, kind, argv, env, self.home / "logs" / f"{kind}.log", cwd=self.home)

    # ---- workers ---------------------------------------------------------------------------------
    def start_worker(self, pool: Pool) -> Proc:
        """One Celery worker for ``pool``: its queues, its concurrency, its own log-server port."""
        with self.state_file.editing() as state:
            proc = self._spawn_worker(state.config, pool, state.next_worker_name(pool.name))
            state.procs.append(proc)
        return proc

    def _spawn_worker(self, config: StackConfig, pool: Pool, name: str) -> Proc:
        env = self.env(config)
        port = services.free_port()
        patch_report = self.patch_report(name)
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
        return spawn(
            f"worker {name}",
            "worker",
            argv,
            env,
            self.home / "logs" / f"worker-{name}.log",
            cwd=self.home,
            pool=pool.name,
            worker=name,
            log_server_port=port,
            grace=pool.termination_grace_period_seconds,
        )

    def patch_report(self, worker: str) -> Path:
        return self.home / "logs" / f"worker-{worker}.patches.json"

    def worker_patches(self, proc: Proc) -> dict[str, str] | None:
        """The patches a running worker reported at its start (``sluice.worker.patches``), or None before that."""
        live = proc.process()
        found = report.read(self.patch_report(proc.extra["worker"])) if live else None
        if live is None or found is None:
            return None
        try:
            ours = {live.pid, *(child.pid for child in live.children(recursive=True))}
        except psutil.Error:
            return None
        if found.get("pid") not in ours:  # left by an earlier worker of that name
            return None
        return {str(name): str(state) for name, state in found["patches"].items()}

    def respawn(self, proc: Proc, config: StackConfig) -> Proc:
        """Start a component that died again, with what is left of its old process group killed first; the
        caller records it in the state. Services and core components come back as they were (same name,
        port, data). A worker comes back as a new worker of its pool (``<pool>-<n+1>``, as a Deployment's new
        pod gets a new name), so task instances' hostnames keep telling which worker process ran a try."""
        clear_group(proc)
        new: Proc | None  # a service's restart may have no process to hand back (checked below)
        if proc.kind in CORE:
            new = self._spawn_core(proc.kind, self.env(config), config)
        elif proc.kind == "worker":
            pool = next(p for p in config.platform().pools if p.name == proc.extra["pool"])
            with self.state_file.editing() as state:
                name = state.next_worker_name(pool.name)
            new = self._spawn_worker(config, pool, name)
            new.extra["replaces"] = proc.extra["worker"]
        elif proc.kind == "redis":
            new = services.start_redis(Path(proc.log).parent / "redis", int(proc.extra["port"]), self.env(config)).proc
        elif proc.kind == "postgres":
            directory = Path(proc.log).parent / "postgres"
            new = services.start_postgres(directory, int(proc.extra["port"]), self.env(config)).proc
        else:
            raise StackError(f"no way to restart {proc.kind} {proc.name}")
        assert new is not None
        new.extra.update({k: v for k, v in proc.extra.items() if k in ("restarts", "last_exit")})
        return new

    def drain_worker(self, proc: Proc) -> None:
        """Warm shutdown: the worker stops taking tasks, finishes its running ones, then exits."""
        with self.state_file.editing() as state:
            found = state.find(proc.name)
            if found:
                found.extra["draining"] = True
        if proc.alive():
            proc.process().send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    def forget_exited(self) -> list[Proc]:
        """Drop workers that exited after a warm shutdown from the record (the supervisor restarts the rest)."""
        with self.state_file.editing() as state:
            gone = [p for p in state.workers() if p.extra.get("draining") and not p.alive()]
            for proc in gone:
                state.remove(proc)
        return gone

    def celery(self) -> Any:
        from celery import Celery

        return Celery("sluice-stack", broker=self.state().config.broker_url, set_as_current=False)

    def busy_workers(self, names: list[str]) -> set[str] | None:
        """Workers (by stack name) holding an active or reserved task, from Celery's own inspection.

        None when a worker did not answer: a worker we cannot see is treated as busy by the caller.
        """
        if not names:
            return set()
        app = self.celery()
        inspect = app.control.inspect(destination=[celery_hostname(n) for n in names], timeout=1.5)
        active, reserved = inspect.active() or {}, inspect.reserved() or {}
        if set(active) != {celery_hostname(n) for n in names}:
            return None
        busy = {host for host, tasks in active.items() if tasks} | {host for host, tasks in reserved.items() if tasks}
        return {n for n in names if celery_hostname(n) in busy}

    # ---- status ----------------------------------------------------------------------------------
    def status(self) -> Status:
        state = self.state()
        config = state.config
        alive = {proc.name: proc.alive() for proc in state.procs}
        # Workers are reached through the broker: when it does not answer, no ping can tell anything about them.
        broker_problem = self._broker_problem(config.broker_url) if any(alive.values()) else None
        api = state.find("api-server")
        health = self._api_health(config, api)
        live_workers = [p.extra["worker"] for p in state.workers() if alive[p.name]]
        pongs = set() if broker_problem else self._pings(live_workers)
        exits = self._exit_statuses([proc for proc in state.procs if not alive[proc.name]])
        components = []
        for proc in state.procs:
            if not alive[proc.name]:
                verdict = "dead" if not proc.extra.get("draining") else "stopped: drained"
            elif proc.kind in CORE:
                verdict = health.get(proc.kind, "starting")
            elif proc.kind == "worker":
                if proc.extra.get("draining"):
                    verdict = "draining: warm shutdown"
                elif broker_problem:
                    verdict = "waiting: on the broker, which does not answer"
                else:
                    verdict = "healthy" if proc.extra["worker"] in pongs else "starting: no ping reply yet"
            elif proc.kind == "redis" and broker_problem:
                verdict = "unhealthy: no reply to PING"
            else:
                verdict = "healthy"
            restarts, last_exit = int(proc.extra.get("restarts", 0)), str(proc.extra.get("last_exit", ""))
            exit_status = exits.get(proc.name, "")
            components.append(
                ComponentStatus(
                    proc.name,
                    proc.kind,
                    proc.pid,
                    alive[proc.name],
                    verdict,
                    proc.log,
                    restarts,
                    exit_status or last_exit,
                    exit_status=exit_status,
                )
            )
            if alive[proc.name] and proc.kind == "worker":
                components[-1].patches = self.worker_patches(proc)
        if not any(c.alive for c in components):
            return Status(config, components, [])
        import sqlalchemy as sa

        import_errors, events = self._dag_problems(config)
        try:
            pools, database_problem = self.pool_status(state), None
        except sa.exc.OperationalError as exc:  # cannot connect (a query that fails still raises)
            pools, database_problem = [], _database_problem(config.db_url, exc)
        return Status(config, components, pools, import_errors, events, broker_problem, database_problem)

    @staticmethod
    def _broker_problem(url: str) -> str | None:
        """None when the broker answers a Redis PING within ``BROKER_TIMEOUT``, else one line naming it."""
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT)
            try:
                if client.ping():
                    return None
                why = "no PONG"
            finally:
                client.close()
        except (redis.RedisError, OSError, ValueError) as exc:
            why = _first_line(exc)
        return (
            f"broker {_redacted(url)} does not answer a PING within {BROKER_TIMEOUT:g} s ({why}): workers cannot be "
            "reached through it, and no task reaches a worker until it answers"
        )

    def _exit_statuses(self, dead: list[Proc]) -> dict[str, str]:
        """How each dead process ended, where that can be known (``exit_status``); newly learnt ones are kept in
        the stack's record, since a process's exit status can be collected only once, by its parent."""
        found = {proc.name: status for proc in dead if (status := exit_status(proc))}
        learnt = {(p.name, p.pid): found[p.name] for p in dead if p.name in found and not p.extra.get("exit_status")}
        if learnt:
            with self.state_file.editing() as state:
                for proc in state.procs:
                    if (proc.name, proc.pid) in learnt:
                        proc.extra["exit_status"] = learnt[proc.name, proc.pid]
        return found

    def _dag_problems(self, config: StackConfig) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
        """DAG files that do not import, and the scheduler's recent explanations of failed or re-queued tries
        (a worker that died leaves a task log that just stops; the reason is here)."""
        import sqlalchemy as sa

        engine = _engine(config.db_url)
        try:
            with engine.connect() as conn:
                if compat.status_tables_problem(conn) is not None:  # Airflow's tables not as tested: warned once
                    return [], []
                errors = compat.import_errors(conn)
                rows = compat.recent_task_events(conn, list(EVENTS))
        except sa.exc.SQLAlchemyError:
            return [], []
        finally:
            engine.dispose()
        import_errors = [error_location(f, trace or "") for f, trace in errors]
        events = [
            {
                "when": f"{row.dttm:%H:%M:%S}",
                "event": row.event,
                "task": f"{row.dag_id}.{row.task_id} try {row.try_number}",
                "run": row.run_id or "",
                "why": (row.extra or "").split(". See ")[0],
            }
            for row in rows
        ]
        return import_errors, events

    def pool_status(self, state: StackState | None = None) -> list[PoolStatus]:
        from sluice.scaling import desired_replicas, pool_load_sql, pool_state_counts_sql

        state = state or self.state()
        result = []
        engine = _engine(state.config.db_url)
        try:
            with engine.connect() as conn:
                import sqlalchemy as sa

                for pool in state.config.platform().pools:
                    counts = dict(conn.execute(sa.text(pool_state_counts_sql(pool))).all())
                    needed = conn.execute(sa.text(pool_load_sql(pool))).scalar()
                    workers = [p for p in state.workers(pool.name) if p.alive()]
                    fixed = not (state.config.autoscale and pool.autoscaling.enabled)
                    result.append(
                        PoolStatus(
                            pool=pool,
                            queued=int(counts.get("queued", 0)),
                            running=int(counts.get("running", 0)),
                            desired=1 if fixed else desired_replicas(needed, pool),
                            workers=[p.extra["worker"] for p in workers if not p.extra.get("draining")],
                            draining=[p.extra["worker"] for p in workers if p.extra.get("draining")],
                        )
                    )
        finally:
            engine.dispose()
        return result

    def _api_health(self, config: StackConfig, api: Proc | None) -> dict[str, str]:
        """Health from our own api-server only: another process answering its port says nothing about us."""
        live = api.process() if api else None
        if live is None:
            return {}
        listening = services.listeners(config.api_port)
        ours = {live.pid, *(child.pid for child in live.children(recursive=True))}
        if listening and not listening & ours:
            who = services.holder(config.api_port)
            return {"api-server": f"unhealthy: port {config.api_port} is answered by {who}, not this stack"}
        try:
            body = httpx.get(f"{config.api_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            return {"api-server": f"starting: {type(exc).__name__}"}
        out = {"api-server": "healthy"}
        for kind, key in (("scheduler", "scheduler"), ("triggerer", "triggerer"), ("dag-processor", "dag_processor")):
            status = (body.get(key) or {}).get("status")
            out[kind] = "healthy" if status == "healthy" else f"starting: {status or 'no heartbeat yet'}"
        return out

    def _pings(self, names: list[str]) -> set[str]:
        if not names:
            return set()
        try:
            replies = self.celery().control.ping(destination=[celery_hostname(n) for n in names], timeout=1.5)
        except Exception:  # broker down: no worker is reachable
            return set()
        hosts = {host for reply in replies for host in reply}
        return {n for n in names if celery_hostname(n) in hosts}

    def wait_healthy(self, progress: Progress = _quiet, timeout: float = HEALTH_TIMEOUT) -> Status:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            status = self.status()
            dead = [c for c in status.components if not c.alive and c.kind != "worker"]
            if dead:
                how = f" ({dead[0].exit_status})" if dead[0].exit_status else ""
                raise StackError(f"{dead[0].name} exited during start-up{how}; see {dead[0].log}")
            waiting = [
                c
                for c in status.components
                if c.alive and c.health != "healthy" and not c.health.startswith("draining:")
            ]
            if not waiting:
                return status
            summary = ", ".join(f"{c.name} ({c.health})" for c in waiting)
            if summary != last:
                progress(f"waiting for {summary}")
                last = summary
            if time.monotonic() > deadline:
                raise StackError(f"not healthy after {timeout:.0f} s: {summary}; logs in {self.home / 'logs'}")
            time.sleep(1)

    # ---- down ------------------------------------------------------------------------------------
    def down(self, progress: Progress = _quiet) -> list[tuple[str, str]]:
        """Stop what this stack started, workers warm (their running tasks finish), services last."""
        if not self.state_file.exists():
            return []
        outcomes = []
        for kind in STOP_ORDER:
            procs = self.state().of_kind(kind)
            sig = services.STOP_SIGNAL.get(kind, signal.SIGTERM)
            signalled = {proc.name for proc in procs if signal_proc(proc, sig)}  # all at once, then wait
            spare = frozenset(p.pid for p in self.state().procs)
            for proc in procs:
                progress(f"stopping {proc.name}")
                timeout = float(proc.extra.get("grace", 60)) if kind == "worker" else 60.0
                outcomes.append((proc.name, stop(proc, sig, timeout, signalled=proc.name in signalled, spare=spare)))
            with self.state_file.editing() as state:
                for proc in procs:
                    state.remove(proc)
            if kind == "worker":
                # Their tasks have finished (warm stop); what is left is a step container no task owns any more.
                from sluice.launchers.container import remove_for_home

                removed = remove_for_home(self.home)
                if removed:
                    outcomes.append(("step containers", f"removed {len(removed)}: {', '.join(removed)}"))
        return outcomes

    # ---- faults (tests and operators) ------------------------------------------------------------
    def restart(self, name: str, sig: signal.Signals = signal.SIGKILL) -> Proc:
        """Stop one component and start it again with the same settings (the fault tests use this); the
        supervisor does the same, unasked, for a component that died."""
        state = self.state()
        proc = state.find(name)
        if proc is None:
            raise StackError(f"no component {name!r} in this stack")
        with self.state_file.editing() as current:  # the supervisor must not restart it meanwhile
            found = current.find(name)
            if found is not None:
                found.extra["restarting"] = True
        stop(proc, sig, timeout=30, spare=frozenset(p.pid for p in state.procs))
        new = self.respawn(proc, state.config)
        with self.state_file.editing() as current:
            current.remove(proc)
            current.procs.append(new)
        return new


def _redacted(url: str) -> str:
    """A connection URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def celery_hostname(worker: str) -> str:
    return f"{worker}@{socket.gethostname()}"


def exit_status(proc: Proc) -> str | None:
    """How a component's process ended ("killed by SIGKILL", "exit code 1") where that can be known: recorded in
    the stack's record, or collected now because this process is its parent and it has not been reaped yet (``sluice
    up`` for what it started, while it runs; the supervisor for what it restarted). None otherwise: a process's exit
    status goes to its parent only."""
    recorded = proc.extra.get("exit_status")
    if recorded:
        return str(recorded)
    try:
        ended = psutil.Process(proc.pid)
        if abs(ended.create_time() - proc.create_time) > 0.05 or ended.status() != psutil.STATUS_ZOMBIE:
            return None
        # A multi-threaded process shows as a zombie while its other threads still end: collectable moments later.
        for _ in range(50):
            pid, wait_status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                return describe_wait_status(wait_status)
            time.sleep(0.01)
    except (psutil.Error, OSError):  # gone (reaped by its parent), or not our child (ChildProcessError)
        return None
    return None


def describe_wait_status(wait_status: int) -> str:
    """A wait status (``os.waitpid``) in words: "killed by SIGKILL", "exit code 1"."""
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    if os.WIFEXITED(wait_status):
        return f"exit code {os.WEXITSTATUS(wait_status)}"
    return f"wait status {wait_status}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def _database_problem(url: str, exc: Exception) -> str:
    return (
        f"metadata database {_redacted(url)} does not answer ({_first_line(exc)}): nothing can be scheduled or "
        "recorded, and the pools' queued and running tasks are unknown"
    )


def _engine(url: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": DB_CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
