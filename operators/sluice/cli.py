"""The ``sluice`` command line (typer + rich).

Airflow is imported lazily, after ``sluice.embedded.configure()`` has set its environment.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sluice.platform import PlatformError, repo_root

DEFAULT_DAGS = repo_root() / "dags"

app = typer.Typer(help="Sluice: ML pipelines on Apache Airflow 3.", no_args_is_help=True, add_completion=False)
console = Console()

STATE_STYLE = {"success": "green", "failed": "red", "upstream_failed": "yellow", "skipped": "dim"}


@app.command()
def demo(
    dag_id: Annotated[str, typer.Argument(help="example DAG to run")] = "ml_training_pipeline",
    conf: Annotated[str, typer.Option(help="DAG run conf as JSON, e.g. '{\"min_roc_auc\": 0.99}'")] = "{}",
    dags_folder: Annotated[Path, typer.Option(help="folder holding the DAGs")] = DEFAULT_DAGS,
) -> None:
    """Run an example pipeline end to end on the embedded default (SQLite, steps as local processes)."""
    from sluice import embedded

    warnings.filterwarnings("ignore", message=".*httpx.*starlette.*")  # Airflow's dependency noise
    started = time.monotonic()
    airflow_home = embedded.configure(dags_folder=dags_folder)
    console.print(f"[bold]Sluice demo[/] · {dag_id} · Airflow home {airflow_home} · launcher local · SQLite")
    from sluice import runs
    from sluice.platform import sluice_home

    with console.status("preparing demo sources and the metadata DB"):
        runs.write_demo_data(sluice_home() / "demo-data")
        embedded.migrate()
    try:
        run_conf = json.loads(conf)
    except json.JSONDecodeError as exc:
        console.print(f"[red]--conf is not valid JSON: {exc}[/]")
        raise typer.Exit(2) from None
    with console.status(f"running {dag_id}"):
        try:
            outcome = runs.run_dag(dag_id, dags_folder, run_conf)
        except (KeyError, RuntimeError) as exc:
            console.print(f"[red]{exc.args[0] if exc.args else exc}[/]")
            raise typer.Exit(2) from None
    _print_outcome(outcome)
    console.print(f"run {outcome.run_id}: [bold]{outcome.state}[/] in {time.monotonic() - started:.1f} s")
    if not outcome.succeeded:
        raise typer.Exit(1)


def _print_outcome(outcome: object) -> None:
    from sluice.runs import RunOutcome, local_display

    assert isinstance(outcome, RunOutcome)
    states = Table(title=f"{outcome.dag_id} · task states")
    for column in ("task", "state", "tries", "cache"):
        states.add_column(column)
    for task in outcome.tasks:
        name = task.task_id if task.map_index < 0 else f"{task.task_id}[{task.map_index}]"
        style = STATE_STYLE.get(task.state or "", "")
        states.add_row(name, f"[{style}]{task.state}[/]", str(task.try_number), task.cache_state)
    console.print(states)

    metrics = Table(title="metrics")
    for column in ("task", "metric", "value"):
        metrics.add_column(column)
    root = outcome.artifact_prefix
    paths = Table(title="artifacts")
    for column in ("task", "output", "path"):
        paths.add_column(column, overflow="fold")
    for task in outcome.tasks:
        for name, value in task.metrics.items():
            metrics.add_row(task.task_id, name, f"{value:.4f}" if isinstance(value, float) else str(value))
        for name, uri in task.outputs.items():
            shown = uri.removeprefix(root.rstrip("/") + "/") if uri.startswith(root) else local_display(uri)
            paths.add_row(task.task_id, name, shown)
    console.print(metrics)
    console.print(paths)
    console.print(f"artifact paths are relative to {local_display(root)}/", soft_wrap=True)


@app.command()
def check(
    dag_folder: Annotated[Path, typer.Argument(help="DAG folder to check")] = DEFAULT_DAGS,
) -> None:
    """Import every DAG and report unknown queues/profiles and import errors; exit 1 on any problem."""
    from sluice import checks, embedded

    embedded.configure(dags_folder=dag_folder)
    try:
        problems = checks.check_dag_folder(dag_folder)
    except PlatformError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/] in {dag_folder}")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {dag_folder}: every DAG imports and every queue and profile exists")


@app.command("pod-spec")
def pod_spec(
    dag_id: Annotated[str, typer.Argument(help="DAG id")],
    task_id: Annotated[str, typer.Argument(help="an MLStepOperator task of that DAG")],
    dags_folder: Annotated[Path, typer.Option(help="folder holding the DAGs")] = DEFAULT_DAGS,
) -> None:
    """Print the pod manifest (YAML) the Kubernetes launcher would submit for a step, built offline."""
    import yaml

    from sluice import embedded

    embedded.configure(dags_folder=dags_folder)
    from sluice.podspec import pod_manifest

    try:
        manifest = pod_manifest(dag_id, task_id, dags_folder)
    except (KeyError, TypeError, PlatformError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    typer.echo(yaml.safe_dump(manifest, sort_keys=False), nl=False)


if __name__ == "__main__":
    app()
