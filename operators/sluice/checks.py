"""``sluice check``: the DAG-import checks, runnable from a shell or a pre-commit hook.

The cluster policy routes and refuses queues by the executors configured, so a DAG is checked against the
executors of the target that will run it: one that passes for the cluster (a ``kubernetes`` queue task) is
refused by the local stack, which has no KubernetesExecutor.
"""

from __future__ import annotations

import re
from pathlib import Path

from sluice.environ import environment
from sluice.platform import current_platform
from sluice.policy import configured_executors, profile_problem, queue_problem, step_problem

EXECUTOR_ENV = "AIRFLOW__CORE__EXECUTOR"
TARGETS = {
    "chart": "a cluster installed with the chart (its values' executor)",
    "stack": "sluice up, the local distributed stack",
    "embedded": "sluice demo and the tests (Airflow on SQLite)",
}
DEFAULT_TARGET = "chart"  # where a pushed DAG runs: what CI and pre-commit hooks guard
DAG_FILES = "*.py or *.zip"  # what Airflow's DagBag reads from a DAG folder


def dag_files(dag_folder: Path) -> list[Path]:
    """The files under ``dag_folder`` that Airflow would read for DAGs (any depth)."""
    return sorted(p for p in dag_folder.rglob("*") if p.suffix in (".py", ".zip") and p.is_file())


def target_executors(target: str) -> str:
    """The ``[core] executor`` of a target, read from where that target sets it."""
    if target == "chart":
        return current_platform().executor
    if target == "stack":
        from sluice.stack.config import EXECUTOR

        return EXECUTOR
    if target == "embedded":
        from sluice.embedded import EXECUTOR

        return EXECUTOR
    raise ValueError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")


# Deep enough that an error raised inside Sluice or Airflow still shows the DAG file's frame (Airflow keeps 2).
TRACEBACK_DEPTH_ENV = "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH"
TRACEBACK_DEPTH = "50"
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)', re.MULTILINE)


def error_location(path: str, error: str) -> tuple[str, str]:
    """An import error of the DAG file ``path`` (absolute, or relative as the metadata DB stores it) as
    (where, message): where is ``path:line`` at the error's deepest frame in that file (where the DAG says what is
    wrong, even when the error is raised deep in Sluice or Airflow); message is the traceback's last line, followed
    by the deepest frame of any file when that file has no frame in the traceback."""
    text = error.strip()
    message = text.splitlines()[-1] if text else "(no message)"
    frames = [(m["file"], m["line"]) for m in _FRAME.finditer(text) if not m["file"].startswith("<")]
    relative = "/" + path.lstrip("/")
    own = [line for file, line in frames if file == path or file.endswith(relative)]
    if own:
        return f"{path}:{own[-1]}", message
    if frames:
        return path, f"{message} (at {frames[-1][0]}:{frames[-1][1]})"
    return path, message


def check_dag_folder(dag_folder: Path, executors: str | None = None) -> list[str]:
    """Import errors (the policy's and MLStepOperator's among them: an unmapped step's spec is checked when it is
    built) plus queue, profile and mapped steps' spec problems of loaded DAGs; parsed with ``[core] executor`` set
    to ``executors`` when given (a target's), else as configured."""
    from airflow.dag_processing.dagbag import DagBag

    platform = current_platform()
    parse_env = {TRACEBACK_DEPTH_ENV: TRACEBACK_DEPTH, **({EXECUTOR_ENV: executors} if executors else {})}
    with environment(parse_env):
        bag = DagBag(dag_folder=str(dag_folder))
        problems = [": ".join(error_location(path, error)) for path, error in sorted(bag.import_errors.items())]
        if not bag.dags and not bag.import_errors:
            problems.append(f"{dag_folder}: no DAGs found (its Python files define none)")
        configured = configured_executors()
        for dag_id in sorted(bag.dags):
            for task in bag.dags[dag_id].tasks:
                problem = queue_problem(task, platform, configured) or profile_problem(task, platform)
                problem = problem or step_problem(task, platform)
                if problem:
                    problems.append(problem)
    return problems
