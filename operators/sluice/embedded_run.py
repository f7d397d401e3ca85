"""One DAG run on the embedded default with independent tasks side by side, up to this machine's cores.

``dag.test()`` alone runs one task at a time, so on a 2-core laptop one core idles through every shard map and
every set of candidates. With ``use_executor=True`` it hands each ready task to the executor the embedded default
configures (Airflow's ``LocalExecutor``, ``[core] parallelism`` = the cores), whose task processes report through
Airflow's Task Execution API. That API is served here, from a thread of this process on a loopback port (the
same app ``airflow api-server --apps execution`` serves), so nothing else has to be started.

What keeps a task's hand-off short (measured on the sharded demo: ~5 s lost after a third of the tasks without
them): the supervisor notices its task process's exit at once (``sluice.worker.exit_wakeup``; stock, it can
sleep through a whole ``[workers] min_heartbeat_interval``, 5 s, which is also cut to the stack's 1 s here), counts the
start as the first heartbeat (``sluice.worker.start_heartbeat``), and ``dag.test()``'s loop wakes when a task
reports its end instead of a second later (``sluice.compat.dag_test_waits``). Each of these falls back to
Airflow's own behaviour where its symbols do not check out; the run is then only slower. With the local launcher,
what each step task would pay on its own is paid once before the executor forks: the warm step runner starts in
the background, and each step command's code identity is cached here, for the task processes to inherit.

At the run's end a task slot that does not stop within STOP_SECONDS is terminated (``LocalExecutor.end()`` would
wait on it forever). ``SLUICE_PARALLELISM=1`` (or a single core) keeps the serial ``dag.test()``, as does a DAG
that is not in a file.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sluice.environ import environment

log = logging.getLogger(__name__)

ENV = "SLUICE_PARALLELISM"
EXECUTOR = "LocalExecutor"
# The longest dag.test() sleeps between scheduling passes while tasks run: a task that frees a slot without a
# state report (its supervisor is still reaping it when the report wakes the loop) is followed this much later.
PASS_SECONDS = 0.25
API_START_SECONDS = 60.0
STOP_SECONDS = 10.0  # an interrupted run's executor processes get this long to stop their tasks, then SIGKILL


def parallelism() -> int:
    """Tasks an embedded run keeps going at once: ``SLUICE_PARALLELISM``, else the cores this process may use."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return len(os.sched_getaffinity(0))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV}={raw!r}: set it to a whole number of tasks at once (1: one at a time)")
    return value


def side_by_side(dag: Any) -> bool:
    """Whether ``dag``'s run goes through the executor: more than one task at once, the embedded default's
    LocalExecutor configured, and the DAG read from a file (the executor's task processes parse that file)."""
    from airflow.configuration import conf

    executor = conf.get("core", "executor", fallback="")
    fileloc: str | None = getattr(dag, "fileloc", None)
    return parallelism() > 1 and executor == EXECUTOR and fileloc is not None and Path(fileloc).is_file()


@contextlib.contextmanager
def execution_api(task_ended: threading.Event) -> Iterator[str]:
    """Airflow's Task Execution API, served from a daemon thread on a free loopback port, until the block ends;
    yields its URL. ``task_ended`` is set whenever a task reports a new state."""
    import uvicorn
    from airflow.api_fastapi.app import create_app

    app = create_app(apps="execution")

    @app.middleware("http")
    async def _note_state(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if request.method == "PATCH" and request.url.path.endswith("/state"):
            task_ended.set()
        return response

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="sluice-execution-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + API_START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            listener.close()
            raise RuntimeError(
                "the embedded run's Task Execution API did not start (see the log above); run one task at a time "
                f"with {ENV}=1"
            )
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/execution/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@contextlib.contextmanager
def _supervisor_patches() -> Iterator[None]:
    """The worker patches that shorten a task's hand-off, in this process's supervisor class while inside (the
    executor's processes fork from it); a patch whose symbols do not check out stays out, with one warning."""
    from sluice.worker import exit_wakeup, patches, start_heartbeat

    wanted = [patch for patch in patches.PATCHES if patch.module in (exit_wakeup, start_heartbeat)]
    switches = {patch.module.ENV: os.environ.get(patch.module.ENV) or "true" for patch in wanted}
    with environment(switches):
        installed = [patch for patch in wanted if patches.install(patch) == patches.ACTIVE]
        try:
            yield
        finally:
            for patch in installed:
                patch.module.uninstall()


def _stop_workers(before: set[multiprocessing.process.BaseProcess]) -> None:
    """Stop the executor processes an interrupted run leaves (their task processes die with them)."""
    stop_slots([child for child in multiprocessing.active_children() if child not in before])


def stop_slots(workers: list[multiprocessing.process.BaseProcess]) -> None:
    """Terminate these task slots, SIGKILL what is left after STOP_SECONDS, and reap them."""
    if workers:
        log.warning("stopping the run's %d task slot(s) (at most %.0f s)", len(workers), STOP_SECONDS)
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)


def _warm_local_steps(dag: Any) -> None:
    """With the local launcher: its warm step runner starts while the run's first (Airflow) tasks run, and this
    process's code-identity caches are filled for the DAG's step commands (the task processes fork from it)."""
    from sluice.launchers import local
    from sluice.operators import MLStepOperator, is_mapped_step
    from sluice.platform import current_platform
    from sluice.specs import literal_values

    commands = []
    for task in dag.tasks:
        if isinstance(task, MLStepOperator):
            commands.append(task.command)
        elif is_mapped_step(task):  # its .partial() or literal .expand() commands
            commands += [command for command, _ in literal_values(task, "command", None) or []]
    local.warm_local_steps(current_platform(), [command for command in commands if isinstance(command, list)])


def run(dag: Any, conf: dict[str, Any] | None = None, logical_date: Any = None) -> Any:
    """``dag.test()`` through the LocalExecutor, tasks side by side; returns its DagRun."""
    # What every task process imports, imported once here: the executor's processes fork from this one.
    import airflow.sdk.execution_time.task_runner  # noqa: F401

    from sluice import compat

    task_ended = threading.Event()

    def wait(seconds: float) -> None:
        task_ended.wait(min(seconds, PASS_SECONDS))
        task_ended.clear()

    settings = {
        "AIRFLOW__CORE__PARALLELISM": str(parallelism()),
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",  # as the local stack and the chart tune it
        # One process tree signs and checks the task tokens: a secret of its own, unless one is configured.
        "AIRFLOW__API_AUTH__JWT_SECRET": os.environ.get("AIRFLOW__API_AUTH__JWT_SECRET") or secrets.token_urlsafe(64),
    }
    kwargs: dict[str, Any] = {"run_conf": conf, "use_executor": True}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    before = set(multiprocessing.active_children())
    _warm_local_steps(dag)
    with contextlib.ExitStack() as stack:
        stack.enter_context(environment(settings))
        url = stack.enter_context(execution_api(task_ended))
        stack.enter_context(environment({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": url}))
        stack.enter_context(_supervisor_patches())
        stack.enter_context(compat.dag_test_waits(wait))
        stack.enter_context(compat.bounded_local_executor_end(STOP_SECONDS, stop_slots))
        try:
            return dag.test(**kwargs)
        except BaseException:
            _stop_workers(before)
            raise
