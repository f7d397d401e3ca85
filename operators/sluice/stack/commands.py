"""``sluice up``, ``sluice status`` and ``sluice down``: the local stack from the command line."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sluice.platform import PlatformError, repo_root, sluice_home
from sluice.stack.config import StackConfig
from sluice.stack.errors import StackError
from sluice.stack.local import LocalStack, Status

console = Console()
DEFAULT_DAGS = repo_root() / "dags"
HEALTH_STYLE = {"healthy": "green", "dead": "red"}


def default_home() -> Path:
    return Path(os.environ.get("SLUICE_STACK_HOME") or sluice_home() / "stack")


HomeOption = Annotated[Path, typer.Option("--home", help="where the stack keeps its state, logs and data")]


def up(
    home: HomeOption = None,  # type: ignore[assignment]
    db_url: Annotated[str, typer.Option(help="PostgreSQL for the metadata DB (created if missing)")] = (
        "postgresql+psycopg2://postgres@127.0.0.1:5432/sluice"
    ),
    broker_url: Annotated[str, typer.Option(help="Redis for Celery")] = "redis://127.0.0.1:6379/0",
    dags_folder: Annotated[Path, typer.Option(help="folder holding the DAGs")] = DEFAULT_DAGS,
    api_port: Annotated[int, typer.Option(help="port of the API server and UI")] = 8080,
    autoscale: Annotated[bool, typer.Option(help="start and stop each pool's workers with its load")] = False,
    tuning: Annotated[str, typer.Option(help="'sluice' (measured defaults) or 'stock' Airflow settings")] = "sluice",
) -> None:
    """Start Airflow (api-server, scheduler, dag-processor, triggerer) and one Celery worker per pool."""
    stack = LocalStack(home or default_home())
    config = StackConfig(
        db_url=db_url,
        broker_url=broker_url,
        dags_folder=str(dags_folder.resolve()),
        platform_file=str(Path(os.environ["SLUICE_PLATFORM_FILE"]).resolve())
        if os.environ.get("SLUICE_PLATFORM_FILE")
        else None,
        api_port=api_port,
        autoscale=autoscale,
        tuning=tuning,  # type: ignore[arg-type]
    )
    console.print(
        f"[bold]Sluice local stack[/] in {stack.home} · executor [bold]CeleryExecutor[/] "
        "(the chart adds KubernetesExecutor; no Kubernetes API here)"
    )
    started = time.monotonic()
    try:
        with console.status("starting") as spinner:
            stack.up(config, progress=lambda msg: _progress(spinner, msg))
    except (StackError, PlatformError) as exc:
        console.print(f"[red]{exc}[/]")
        console.print("processes started so far keep running: `sluice status`, `sluice down`")
        raise typer.Exit(1) from None
    console.print(f"[green]healthy[/] in {time.monotonic() - started:.1f} s")
    _print_status(stack.status())
    state = stack.state()
    console.print(
        f"UI and REST API: [bold]{state.config.api_url}[/]  login [bold]admin[/] / {stack.secrets().admin_password}"
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
    _print_status(current)
    if not current.healthy:
        raise typer.Exit(1)


def down(home: HomeOption = None) -> None:  # type: ignore[assignment]
    """Stop everything `sluice up` started (workers warm: running tasks finish), and nothing else."""
    stack = LocalStack(home or default_home())
    with console.status("stopping") as spinner:
        outcomes = stack.down(progress=lambda msg: _progress(spinner, msg))
    if not outcomes:
        console.print(f"nothing to stop in {stack.home}")
        return
    for name, outcome in outcomes:
        console.print(f"{name}: {outcome}")
    console.print(f"data kept in {stack.home} (`sluice up` reuses it)")


def _print_status(status: Status) -> None:
    components = Table(title="components")
    for column in ("component", "pid", "health", "log"):
        components.add_column(column, overflow="fold")
    for comp in status.components:
        style = HEALTH_STYLE.get(comp.health.split(":")[0], "yellow")
        components.add_row(comp.name, str(comp.pid), f"[{style}]{comp.health}[/]", comp.log)
    console.print(components)
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
    console.print(pools)
