"""``sluice check``: the DAG-import checks, runnable from a shell or a pre-commit hook."""

from __future__ import annotations

from pathlib import Path

from sluice.platform import current_platform
from sluice.policy import configured_executors, queue_problem


def check_dag_folder(dag_folder: Path) -> list[str]:
    """Import errors (the policy's and MLStepOperator's among them) plus queue problems of loaded DAGs."""
    from airflow.dag_processing.dagbag import DagBag

    platform = current_platform()
    bag = DagBag(dag_folder=str(dag_folder))
    problems = [f"{path}: {error.strip().splitlines()[-1]}" for path, error in sorted(bag.import_errors.items())]
    executors = configured_executors()
    for dag_id in sorted(bag.dags):
        for task in bag.dags[dag_id].tasks:
            problem = queue_problem(task, platform, executors)
            if problem:
                problems.append(problem)
    return problems
