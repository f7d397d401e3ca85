"""What went wrong in a local stack, in words: how a process ended, a broker or metadata database that does not
answer, DAG files that do not import, and the scheduler's own account of failed or re-queued tries."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import psutil

from sluice import compat
from sluice.checks import error_location
from sluice.stack.config import StackConfig
from sluice.stack.connections import engine, redacted
from sluice.stack.processes import Proc, last_line
from sluice.stack.state import StateFile

# Task-instance events the scheduler records that explain a failed or re-queued try (`sluice status` shows them).
EVENTS = ("heartbeat timeout", "stuck in queued reschedule", "stuck in queued tries exceeded", "state mismatch")
BROKER_TIMEOUT = 1.0  # seconds `sluice status` waits for the broker's PING reply


@dataclass(frozen=True)
class TaskEvent:
    """One of ``EVENTS``, as `sluice status` shows it."""

    when: str  # HH:MM:SS
    event: str
    task: str  # "<dag>.<task> try <n>"
    run: str
    why: str


@dataclass(frozen=True)
class ImportFailure:
    """A DAG file the dag-processor could not import."""

    where: str  # file[:line]
    error: str  # the error's last line


def exit_status(proc: Proc) -> str | None:
    """How a component's process ended ("killed by SIGKILL", "exit code 1") where that can be known: recorded in
    the stack's record, or collected now because this process is its parent and it has not been reaped yet (``sluice
    up`` for what it started, while it runs; the supervisor for what it restarted). None otherwise: a process's exit
    status goes to its parent only."""
    if proc.exit_status:
        return proc.exit_status
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


def exit_statuses(state_file: StateFile, dead: list[Proc]) -> dict[str, str]:
    """How each dead process ended, where that can be known (``exit_status``); newly learnt ones are kept in
    the stack's record, since a process's exit status can be collected only once, by its parent."""
    found = {proc.name: status for proc in dead if (status := exit_status(proc))}
    learnt = {(p.name, p.pid): found[p.name] for p in dead if p.name in found and not p.exit_status}
    if learnt:
        with state_file.editing() as state:
            for proc in state.procs:
                if (proc.name, proc.pid) in learnt:
                    proc.exit_status = learnt[proc.name, proc.pid]
    return found


def death(proc: Proc) -> str:
    """How a dead component ended (the exit status, where this process can collect it) and its log's last words."""
    how, said = exit_status(proc), last_line(proc.log)
    if how:
        return f"{how}; its log ends: {said}" if said else how
    return f"exited; its log ends: {said}" if said else "exited without a word (killed?)"


def broker_problem(url: str) -> str | None:
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
        why = first_line(exc)
    return (
        f"broker {redacted(url)} does not answer a PING within {BROKER_TIMEOUT:g} s ({why}): workers cannot be "
        "reached through it, and no task reaches a worker until it answers"
    )


def database_problem(url: str, exc: Exception) -> str:
    return (
        f"metadata database {redacted(url)} does not answer ({first_line(exc)}): nothing can be scheduled or "
        "recorded, and the pools' queued and running tasks are unknown"
    )


def dag_problems(config: StackConfig) -> tuple[list[ImportFailure], list[TaskEvent]]:
    """DAG files that do not import, and the scheduler's recent explanations of failed or re-queued tries
    (a worker that died leaves a task log that just stops; the reason is here)."""
    import sqlalchemy as sa

    db = engine(config.db_url)
    try:
        with db.connect() as conn:
            if compat.status_tables_problem(conn) is not None:  # Airflow's tables not as tested: warned once
                return [], []
            errors = compat.import_errors(conn)
            rows = compat.recent_task_events(conn, list(EVENTS))
    except sa.exc.SQLAlchemyError:
        return [], []
    finally:
        db.dispose()
    failures = [ImportFailure(*error_location(f, trace or "")) for f, trace in errors]
    events = [
        TaskEvent(
            when=f"{row.dttm:%H:%M:%S}",
            event=row.event,
            task=f"{row.dag_id}.{row.task_id} try {row.try_number}",
            run=row.run_id or "",
            why=(row.extra or "").split(". See ")[0],
        )
        for row in rows
    ]
    return failures, events


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
