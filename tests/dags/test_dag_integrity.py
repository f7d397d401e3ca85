"""Every DAG in dags/ imports cleanly under Sluice's policy and follows the house rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice.checks import check_dag_folder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "ml_training_pipeline" in dagbag.dags


def test_no_dag_has_a_cycle(dagbag) -> None:
    for dag in dagbag.dags.values():
        dag.check_cycle()


def test_every_task_has_an_owner_other_than_the_default(dagbag) -> None:
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag.dag_id}.{task.task_id} has no owner"


def test_every_task_declares_retries(dagbag) -> None:
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.retries is not None, f"{dag.dag_id}.{task.task_id} has no retries set"


def test_ingest_steps_retry_and_the_quality_gate_does_not(dagbag) -> None:
    dag = dagbag.dags["ml_training_pipeline"]
    assert dag.get_task("ingest_csv").retries >= 2
    assert dag.get_task("evaluate").retries == 0


def test_training_pipeline_is_scheduled_daily_without_catchup(dagbag) -> None:
    dag = dagbag.dags["ml_training_pipeline"]
    assert dag.catchup is False
    assert dag.schedule == "@daily"


def test_sluice_check_finds_no_problem_in_the_examples() -> None:
    assert check_dag_folder(REPO / "dags") == []
