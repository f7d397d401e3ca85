"""``sluice check``: the DAG-import checks, runnable from a shell or a pre-commit hook.

The cluster policy routes and refuses queues by the executors configured, so a DAG is checked against the
executors of the target that will run it: one that passes for the cluster (a ``kubernetes`` queue task) is
refused by the local stack, which has no KubernetesExecutor.
"""

from __future__ import annotations

import os
from pathlib import Path

from sluice.platform import current_platform
from sluice.policy import configured_executors, profile_problem, queue_problem

EXECUTOR_ENV = "AIRFLOW__CORE__EXECUTOR"
TARGETS = {
    "chart": "a cluster installed with the chart (its values' executor)",
    "stack": "sluice up, the local distributed stack",
    "embedded": "sluice demo and the tests (Airflow on SQLite)",
}
DEFAULT_TARGET = "chart"  # where a pushed DAG runs: what CI and pre-commit hooks guard


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


def check_dag_folder(dag_folder: Path, executors: str | None = None) -> list[str]:
    """Import errors (the policy's and MLStepOperator's among them) plus queue and profile problems of loaded
    DAGs; parsed with ``[core] executor`` set to ``executors`` when given (a target's), else as configured."""
    from airflow.dag_processing.dagbag import DagBag

    platform = current_platform()
    previous = os.environ.get(EXECUTOR_ENV)
    if executors:
        os.environ[EXECUTOR_ENV] = executors
    try:
        bag = DagBag(dag_folder=str(dag_folder))
        problems = [f"{path}: {error.strip().splitlines()[-1]}" for path, error in sorted(bag.import_errors.items())]
        configured = configured_executors()
        for dag_id in sorted(bag.dags):
            for task in bag.dags[dag_id].tasks:
                problem = queue_problem(task, platform, configured) or profile_problem(task, platform)
                if problem:
                    problems.append(problem)
    finally:
        if previous is None:
            os.environ.pop(EXECUTOR_ENV, None)
        else:
            os.environ[EXECUTOR_ENV] = previous
    return problems
