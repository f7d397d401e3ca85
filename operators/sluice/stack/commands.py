"""``sluice up``, ``sluice status`` and ``sluice down``: the local stack from the command line."""

from __future__ import annotations

import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sluice.platform import PlatformError, default_dags_folder, load_platform, sluice_home
from sluice.stack.config import DEFAULT_BROKER_URL, DEFAULT_DB_URL, StackConfig, Tuning
from sluice.stack.errors import StackError
from sluice.stack.local import LocalStack
from sluice.stack.status import Health, Status
from sluice.worker.report import Patched, PatchState

# Not on a terminal (a log, CI, a pipe): wide enough that tables are not cut to 80 columns.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
DEFAULT_DAGS = default_dags_folder()
HEALTH_STYLE = {Health.HEALTHY: "green", Health.DEAD: "red"}


class LocalLauncherType(StrEnum):
    """Launchers that run steps on this machine (``kubernetes`` needs a cluster)."""

    local = "local"
    container = "container"


def require_launcher(launcher: LocalLauncherType) -> None:
    """Refuse, before anything starts, a launcher that cannot run steps here (no engine, images not built)."""
    if launcher is not LocalLauncherType.container:
        return
    from sluice.launchers.container import preflight

    try:
        problems = preflight(load_platform())
    except PlatformError as exc:
        problems = [str(exc)]
    for problem in problems:
        console.print(f"[red]{escape(problem)}[/]", soft_wrap=True)
    if problems:
        raise typer.Exit(2)


def default_home() -> Path:
    return Path(os.environ.get("SLUICE_STACK_HOME") or sluice_home() / "stack")


HomeOption = Annotated[Path, typer.Option("--home", help="where the stack keeps its state, logs and data")]


def up(
    home: HomeOption = None,  # type: ignore[assignment]
    db_url: Annotated[
        str | None,
        typer.Option(
            help=f"PostgreSQL for the metadata DB (created if missing). Default {DEFAULT_DB_URL}, or a throwaway "
            "server when nothing answers there; a URL you give must answer"
        ),
    ] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(
            help=f"Redis for Celery. Default {DEFAULT_BROKER_URL}, or a throwaway server when nothing answers "
            "there; a URL you give must answer"
        ),
    ] = None,
    dags_folder: Annotated[Path, typer.Option(help="folder holding the DAGs")] = DEFAULT_DAGS,
    api_port: Annotated[int, typer.Option(help="port of the API server and UI")] = 8080,
    autoscale: Annotated[bool, typer.Option(help="start and stop each pool's workers with its load")] = False,
    tuning: Annotated[
        Tuning, typer.Option(help="'sluice' (the chart's measured tuning) or 'stock' (Airflow's own defaults)")
    ] = Tuning.sluice,
    launcher: Annotated[
        LocalLauncherType,
        typer.Option(help="how workers run steps: 'local' processes, or 'container' (each step in its image)"),
    ] = LocalLauncherType.local,
) -> None:
    """Start Airflow (api-server, scheduler, dag-processor, triggerer) and one Celery worker per pool."""
    stack = LocalStack(home or default_home())
    require_launcher(launcher)
    config = StackConfig(
        db_url=db_url or DEFAULT_DB_URL,
        broker_url=broker_url or DEFAULT_BROKER_URL,
        fallback_db=db_url is None,
        fallback_broker=broker_url is None,
        dags_folder=str(dags_folder.resolve()),
        platform_file=str(Path(os.environ["SLUICE_PLATFORM_FILE"]).resolve())
        if os.environ.get("SLUICE_PLATFORM_FILE")
        else None,
        api_port=api_port,
        autoscale=autoscale,
        tuning=tuning,
        launcher=launcher.value,
    )
    console.print(
        f"[bold]Sluice local stack[/] in {stack.home} · executor [bold]CeleryExecutor[/] "
        "(the chart adds KubernetesExecutor; no Kubernetes API here)"
    )
    started = time.monotonic()
    try:
        before = {(p.name, p.pid) for p in stack.running()}  # a stack already running here is not ours to report
    except StackError as exc:  # a record it cannot read
        console.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        with console.status("starting") as spinner:
            stack.up(config, progress=lambda msg: _progress(spinner, msg))
    except (StackError, PlatformError) as exc:
        console.print(f"[red]{exc}[/]")
        left = [p.name for p in stack.running() if (p.name, p.pid) not in before]
        if left:
            where = "" if home is None else f" --home {stack.home}"
            console.print(
                f"processes started so far keep running ({', '.join(left)}): `sluice status{where}`, "
                f"`sluice down{where}`",
                soft_wrap=True,
            )
        raise typer.Exit(1) from None
    console.print(f"[green]healthy[/] in {time.monotonic() - started:.1f} s")
    _print_status(stack.status())
    print_access(stack)


def print_access(stack: LocalStack) -> None:
    """The last lines of `sluice up`: where the UI and REST API are, the login, and how to get a REST API token."""
    api, password = stack.state().config.api_url, stack.secrets().admin_password
    console.print(f"UI and REST API: [bold]{api}[/]  login [bold]admin[/] / {escape(password)}")
    body = escape(f'{{"username": "admin", "password": "{password}"}}')
    console.print(
        f"REST API token: POST {api}/auth/token with {body}; send its access_token as `Authorization: Bearer <token>` "
        f"to {api}/api/v2",
        soft_wrap=True,
    )
    console.print(f"logs: {stack.home / 'logs'}   stop with `sluice down`")


def _progress(spinner: object, message: str) -> None:
    console.log(message)
    spinner.update(message)  # type: ignore[attr-defined]


def status(home: HomeOption = None) -> None:  # type: ignore[assignment]
    """Each component's health and, per pool: queued, running, desired and actual workers."""
    stack = LocalStack(home or default_home())
    try:
        current = stack.status()
    except StackError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    if current.stopped:
        console.print(f"[red]the local stack in {stack.home} is stopped[/]: start it with `sluice up`")
        raise typer.Exit(1)
    _print_status(current)
    if not current.healthy:
        raise typer.Exit(1)


def down(home: HomeOption = None) -> None:  # type: ignore[assignment]
    """Stop everything `sluice up` started (workers warm: running tasks finish), and nothing else."""
    stack = LocalStack(home or default_home())
    try:
        with console.status("stopping") as spinner:
            outcomes = stack.down(progress=lambda msg: _progress(spinner, msg))
    except StackError as exc:
        console.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    if not outcomes:
        console.print(f"nothing to stop in {stack.home}")
        return
    for name, outcome in outcomes:
        console.print(f"{name}: {outcome}")
    console.print(f"data kept in {stack.home} (`sluice up` reuses it)")


def patch_lines(status: Status) -> list[str]:
    """Which Sluice patches the running workers have (sluice.worker.patches): one line per distinct set."""
    groups: dict[tuple[tuple[str, PatchState], ...], list[str]] = {}
    for comp in status.components:
        if comp.kind == "worker" and comp.alive:
            key = tuple(comp.patches.items()) if comp.patches is not None else ()
            groups.setdefault(key, []).append(comp.name.removeprefix("worker "))
    lines = []
    for states, workers in groups.items():
        described = [
            f"{escape(name)} [yellow]{state.state}[/] ({escape(state.why)})"
            if state.state is Patched.NOT_INSTALLED
            else f"{escape(name)} {escape(str(state))}"
            for name, state in states
        ]
        summary = ", ".join(described) or "[yellow]not reported yet[/] (the worker is starting)"
        lines.append(f"worker patches ({', '.join(workers)}): {summary}")
    return lines


def _print_status(status: Status) -> None:
    for problem in status.problems:
        console.print(f"[red]{escape(problem)}[/]", soft_wrap=True)
    components = Table(title="components")
    for column in ("component", "pid", "health", "restarts", "last exit", "log"):
        components.add_column(column, overflow="fold")
    for comp in status.components:
        style = HEALTH_STYLE.get(comp.health.state, "yellow")
        restarts = str(comp.restarts) if comp.restarts else ""
        health = f"[{style}]{escape(str(comp.health))}[/]"
        components.add_row(comp.name, str(comp.pid), health, restarts, escape(comp.last_exit), comp.log)
    console.print(components)
    for line in patch_lines(status):
        console.print(line)
    if status.import_errors:
        errors = Table(title="[red]DAG files that do not import[/]")
        for column in ("file", "error"):
            errors.add_column(column, overflow="fold")
        for failure in status.import_errors:
            errors.add_row(escape(failure.where), escape(failure.error))
        console.print(errors)
    if status.events:
        events = Table(title="why tries failed or were re-queued (last hour, from the scheduler)")
        for column in ("when", "event", "task", "run", "why"):
            events.add_column(column, overflow="fold")
        for event in status.events:
            events.add_row(event.when, event.event, event.task, event.run, escape(event.why))
        console.print(events)
    pools = Table(title=f"pools ({'autoscaled' if status.config.autoscale else 'one worker each'})")
    for column in ("pool", "queues", "concurrency", "queued", "running", "desired", "workers", "min–max"):
        pools.add_column(column)
    for pool in status.pools:
        workers = ", ".join(pool.workers) or "-"
        if pool.draining:
            workers += f" (draining: {', '.join(pool.draining)})"
        scaling = pool.pool.autoscaling
        pools.add_row(
            pool.pool.name,
            ", ".join(pool.pool.queues),
            str(pool.pool.concurrency),
            str(pool.queued),
            str(pool.running),
            str(pool.desired),
            f"{len(pool.workers)}: {workers}",
            f"{scaling.min_replicas}–{scaling.max_replicas}",
        )
    if status.pools or not status.database_problem:
        console.print(pools)
