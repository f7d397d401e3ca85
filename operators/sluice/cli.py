"""The ``sluice`` command line (typer + rich).

Airflow is imported lazily, after ``sluice.embedded.configure()`` has set its environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sluice.checks import DEFAULT_TARGET, TARGETS
from sluice.platform import PlatformError, default_dags_folder
from sluice.stack.commands import LocalLauncherType, require_launcher

if TYPE_CHECKING:
    from sluice.runs import RunOutcome

DEFAULT_DAGS = default_dags_folder()  # the checkout's dags/, or the examples the package ships

app = typer.Typer(help="Sluice: ML pipelines on Apache Airflow 3.", no_args_is_help=True, add_completion=False)
console = Console()

STATE_STYLE = {"success": "green", "failed": "red", "upstream_failed": "yellow", "skipped": "dim"}
# What `sluice demo` runs when given no DAG: the one place the package names an example (README's first command).
DEFAULT_DEMO = "ml_training_pipeline"


def _examples(folder: Path) -> str:
    """The DAG files in ``folder`` (the examples name their files after their DAG), for ``sluice demo --help``."""
    return ", ".join(sorted(path.stem for path in folder.glob("*.py"))) or "none"


@app.command()
def demo(
    dag_id: Annotated[
        str,
        typer.Argument(
            help=f"DAG to run, by id (the examples' files in {DEFAULT_DAGS.name}/: {_examples(DEFAULT_DAGS)})"
        ),
    ] = DEFAULT_DEMO,
    conf: Annotated[str, typer.Option(help="DAG run conf as JSON, e.g. '{\"min_roc_auc\": 0.99}'")] = "{}",
    dags_folder: Annotated[Path, typer.Option(help="folder holding the DAGs (embedded default only)")] = DEFAULT_DAGS,
    stack: Annotated[
        bool,
        typer.Option(
            "--stack",
            help="run on the local stack `sluice up` started (its scheduler, Celery pools and PostgreSQL) rather "
            "than the embedded default",
        ),
    ] = False,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="with --stack: the stack's home, as given to `sluice up --home` (default $SLUICE_STACK_HOME, else "
            "$SLUICE_HOME/stack: .sluice/stack)",
            show_default=False,
        ),
    ] = None,
    launcher: Annotated[
        LocalLauncherType | None,
        typer.Option(
            help="how steps run: 'local' processes (the default) or 'container' (each step in its image, as its "
            "pod would run; `make images` first). With --stack, the stack's own (`sluice up --launcher`)"
        ),
    ] = None,
) -> None:
    """Run an example pipeline end to end on the embedded default (SQLite, steps as local processes), or with
    --stack on the running local stack."""
    warnings.filterwarnings("ignore", message=".*httpx.*starlette.*")  # Airflow's dependency noise
    started = time.monotonic()
    if home is not None and not stack:
        console.print("[red]--home names the local stack's home: use it with --stack[/]")
        raise typer.Exit(2)
    if launcher is not None:
        if stack:
            console.print("[red]--launcher is the stack's: start it with `sluice up --launcher ...`[/]")
            raise typer.Exit(2)
        require_launcher(launcher)
        os.environ["SLUICE_LAUNCHER"] = launcher.value
    try:
        run_conf = json.loads(conf)
    except json.JSONDecodeError as exc:
        console.print(f"[red]--conf is not valid JSON: {exc}[/]")
        raise typer.Exit(2) from None
    outcome = _run_on_stack(dag_id, run_conf, home) if stack else _run_embedded(dag_id, run_conf, dags_folder)
    _print_outcome(outcome)
    console.print(f"run {outcome.run_id}: [bold]{outcome.state}[/] in {time.monotonic() - started:.1f} s")
    if not outcome.succeeded:
        raise typer.Exit(1)


def _run_embedded(dag_id: str, run_conf: dict[str, object], dags_folder: Path) -> RunOutcome:
    from sluice import embedded

    airflow_home = embedded.configure(dags_folder=dags_folder)
    launcher = os.environ.get("SLUICE_LAUNCHER", "local")
    from sluice import demo, embedded_run, runs

    try:
        at_once = embedded_run.parallelism()
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    tasks = "one task at a time" if at_once == 1 else f"up to {at_once} tasks at once"
    console.print(
        f"[bold]Sluice demo[/] · {dag_id} · Airflow home {airflow_home} · launcher {launcher} · SQLite · {tasks}"
    )

    try:
        runs.require_steps_package()
        dag = runs.load_dag(dag_id, dags_folder)
        example = demo.declared(Path(dag.fileloc))
        with console.status("preparing the example's data and the metadata DB"):
            demo.prepare(dag_id, example)
            embedded.migrate()
        demo.require_model(dag_id, example, run_conf)
    except (KeyError, RuntimeError) as exc:  # StepsNotInstalled, DemoError, import errors; KeyError: no such DAG
        console.print(f"[red]{escape(str(exc.args[0] if exc.args else exc))}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    with console.status(f"running {dag_id}"), _without_waiting_lines():
        try:
            return runs.run_loaded(dag, run_conf)
        except RuntimeError as exc:
            console.print(f"[red]{escape(str(exc.args[0] if exc.args else exc))}[/]", soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            from sluice.launchers.warm import stop_runners
            from sluice.platform import sluice_home

            stop_runners(sluice_home())  # the demo's steps are done: its warm runner need not idle on


# dag.test() logs "No tasks to run. unrunnable tasks: ..." once a second while a task waits for its retry: the demo's
# spinner already says it is running, and the final table says what happened.
DAG_TEST_LOGGER, WAITING_LINE = "airflow.sdk.definitions.dag", "No tasks to run"


class _WaitingLineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(WAITING_LINE)


@contextlib.contextmanager
def _without_waiting_lines() -> Iterator[None]:
    """Drop dag.test()'s waiting line while the embedded demo runs (its logger only, for that run only)."""
    logger, waiting = logging.getLogger(DAG_TEST_LOGGER), _WaitingLineFilter()
    logger.addFilter(waiting)
    try:
        yield
    finally:
        logger.removeFilter(waiting)


def _run_on_stack(dag_id: str, run_conf: dict[str, object], home: Path | None) -> RunOutcome:
    """Trigger through the stack's REST API, wait, then read the run from the stack's metadata DB."""
    from sluice.stack.api import AirflowApi
    from sluice.stack.commands import default_home
    from sluice.stack.errors import StackError
    from sluice.stack.local import LocalStack

    stack = LocalStack(home or default_home())
    option = escape(f" --home {stack.home}") if home else ""
    elsewhere = "a stack in another home: pass --home, or set SLUICE_STACK_HOME"
    if not stack.state_file.exists():
        console.print(
            f"[red]no local stack in {escape(str(stack.home))}[/]: start one with `sluice up{option}`; for {elsewhere}",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    try:
        current = stack.status()
    except StackError as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    if current.stopped or not current.healthy:
        console.print(
            f"[red]the local stack in {escape(str(stack.home))} is not running healthy[/]: see "
            f"`sluice status{option}`, `sluice up{option}`; for {elsewhere}",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    config = current.config
    os.environ.update(stack.env())  # this process reads the run where the stack keeps it: its DB, its artifacts
    console.print(f"[bold]Sluice demo[/] · {dag_id} · local stack {config.api_url} · Celery pools · PostgreSQL")
    from sluice import demo, runs

    try:
        api = AirflowApi(config.api_url, "admin", stack.secrets().admin_password)
        # The stack's DAG file, as its dag-processor parsed it; its data goes where the stack's DAGs look
        # ($SLUICE_DEMO_DATA of the stack's environment: its home's demo-data).
        example = demo.declared(Path(api.wait_for_dag(dag_id, timeout=120)["fileloc"]))
        with console.status("preparing the example's data"):
            demo.prepare(dag_id, example)
        demo.require_model(dag_id, example, run_conf)
        with console.status(f"running {dag_id} on the stack") as status:
            run = api.run(
                dag_id,
                run_conf,
                started=lambda run_id: status.update(f"running {dag_id} on the stack (run {run_id})"),
            )
    except (StackError, RuntimeError) as exc:  # the API's answers, DemoError, StepsNotInstalled
        console.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    return runs.collect(dag_id, str(run["dag_run_id"]))


def _print_outcome(outcome: RunOutcome) -> None:
    from sluice.runs import local_display

    states = Table(title=f"{outcome.dag_id} · task states")
    for column in ("task", "state", "tries", "cache", "peak memory / profile"):
        states.add_column(column)
    for task in outcome.tasks:
        name = task.task_id if task.map_index < 0 else f"{task.task_id}[{task.map_index}]"
        style = STATE_STYLE.get(task.state or "", "")
        memory = task.peak_memory
        shown = f"{memory[0] / 2**20:.0f} / {memory[1] / 2**20:.0f} MiB" if memory else ""
        states.add_row(name, f"[{style}]{task.state}[/]", str(task.try_number), task.cache_state, shown)
    console.print(states)

    metrics = Table(title="metrics")
    for column in ("task", "metric", "value"):
        metrics.add_column(column)
    root = outcome.artifact_prefix
    paths = Table(title="artifacts")
    for column in ("task", "output", "path"):
        paths.add_column(column, overflow="fold")
    for task in outcome.tasks:
        label = task.task_id if task.map_index < 0 else f"{task.task_id}[{task.map_index}]"
        for name, value in task.metrics.items():
            metrics.add_row(label, name, f"{value:.4f}" if isinstance(value, float) else str(value))
        for name, uri in task.outputs.items():
            shown = uri.removeprefix(root.rstrip("/") + "/") if uri.startswith(root) else local_display(uri)
            paths.add_row(label, name, shown)
    console.print(metrics)
    console.print(paths)
    console.print(f"artifact paths are relative to {local_display(root)}/", soft_wrap=True)
    mapped = sorted({t.task_id for t in outcome.tasks if t.map_index >= 0})
    if mapped:
        counts = ", ".join(f"{task_id} {len(outcome.mapped(task_id))}" for task_id in mapped)
        console.print(f"mapped steps: {outcome.mapped_count} ({counts})")
    else:
        console.print("mapped steps: 0")
    _print_handoffs(outcome)


def _print_handoffs(outcome: RunOutcome) -> None:
    """What each mapped step's instances cost to start and finish against their work: the figure to size shards by
    (docs/pipelines.md, "Shard size")."""
    from sluice.runs import HANDOFF_SHARE

    handoffs = outcome.handoffs()
    if not handoffs:
        return
    console.print("hand-off per mapped step instance (medians; the task's start and end around its step):")
    for handoff in handoffs:
        line = (
            f"  {handoff.task_id}: {handoff.handoff_seconds:.2f} s, {handoff.share:.0%} of its "
            f"{handoff.step_seconds:.2f} s step ({handoff.instances} instance{'s' * (handoff.instances != 1)})"
        )
        if handoff.too_small:
            growth = f"{handoff.growth:.1f}" if handoff.growth < 10 else f"{handoff.growth:.0f}"
            work = f"~{growth}× the work per instance (e.g. rows per shard)"
            line += f": over {HANDOFF_SHARE:.0%}; {work} brings it under"
        console.print(line, soft_wrap=True)


class Target(StrEnum):
    """What will run the DAGs, one member per ``sluice.checks.TARGETS``: its executors decide which queues can run."""

    chart = "chart"
    stack = "stack"
    embedded = "embedded"


CHECK_TARGET = Target(DEFAULT_TARGET)


@app.command()
def check(
    dag_folder: Annotated[Path, typer.Argument(help="DAG folder to check")] = DEFAULT_DAGS,
    target: Annotated[
        Target,
        typer.Option(
            help="what will run the DAGs, whose executors they are checked against: "
            + "; ".join(f"{name}: {what}" for name, what in TARGETS.items())
        ),
    ] = CHECK_TARGET,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also print Airflow's log of each import error (tracebacks)")
    ] = False,
) -> None:
    """Import every DAG as TARGET would and report import errors, unknown queues and profiles, and steps whose
    params, inputs or outputs break their spec (unknown or missing, wrong type: sluice-step --describe).

    Exit 1 on any problem, and when the folder holds no DAG file or no DAG; exit 2 when DAG_FOLDER does not exist
    or is not a folder."""
    import os

    from sluice import checks, embedded

    if not dag_folder.exists():
        console.print(
            f"[red]{escape(str(dag_folder))} does not exist[/]: name the folder holding the DAG files", soft_wrap=True
        )
        raise typer.Exit(2)
    if not dag_folder.is_dir():
        console.print(
            f"[red]{escape(str(dag_folder))} is not a folder[/]: `sluice check` takes the folder holding the DAG files",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    if not checks.dag_files(dag_folder):
        console.print(
            f"[red]no DAG files ({checks.DAG_FILES}) in {escape(str(dag_folder))}[/]: nothing to check", soft_wrap=True
        )
        raise typer.Exit(1)
    if not verbose:
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "CRITICAL"  # each problem is printed below, in one line
    embedded.configure(dags_folder=dag_folder)
    try:
        executors = checks.target_executors(target.value)
        console.print(f"checking {dag_folder} for target [bold]{target}[/] (executor {executors})", soft_wrap=True)
        problems = checks.check_dag_folder(dag_folder, executors)
    except PlatformError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    for problem in problems:
        console.print(f"[red]✗[/] {problem}", soft_wrap=True)
    if problems:
        console.print(f"[red]{len(problems)} problem(s)[/] in {dag_folder} for target {target}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(
        f"[green]✓[/] {dag_folder}: every DAG imports and every queue and profile exists for target {target}",
        soft_wrap=True,
    )


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


@app.command("admin-user")
def admin_user(
    username: Annotated[str, typer.Option(help="the admin's user name")] = "admin",
    password_env: Annotated[str, typer.Option(help="environment variable holding the password")] = (
        "SLUICE_ADMIN_PASSWORD"
    ),
) -> None:
    """Create the FAB admin user with the password in $SLUICE_ADMIN_PASSWORD, or reset it to that (the chart's Job)."""
    import os

    from sluice.admin import AdminUserError, ensure_admin_when_ready

    try:
        outcome = ensure_admin_when_ready(username, os.environ.get(password_env, ""))
    except AdminUserError as exc:
        console.print(f"[red]admin user {username!r}: {exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"admin user {username!r}: {outcome}")


def _register_stack_commands() -> None:
    from sluice.stack import commands

    app.command()(commands.up)
    app.command()(commands.status)
    app.command()(commands.down)


_register_stack_commands()

if __name__ == "__main__":
    app()
