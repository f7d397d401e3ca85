"""Every DAG in dags/ imports cleanly under Sluice's policy and follows the house rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
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
    assert {"ml_training_pipeline", "batch_scoring", "daily_features"} <= set(dagbag.dags)


# The default grid as the README and docs/pipelines.md describe it: 12 candidates over 5 algorithms, the tree
# ensembles on the highmem pool.
DEFAULT_POOL_ALGORITHMS = {"logistic_regression": 3, "knn": 3, "svc": 2}
HIGHMEM_ALGORITHMS = {"random_forest": 2, "gradient_boosting": 2}


def test_default_grid_maps_twelve_candidates_over_five_algorithms_the_tree_ensembles_on_highmem(dagbag) -> None:
    dag = dagbag.dags["ml_training_pipeline"]
    grid = dag.params["grid"]
    assert Counter(entry["algorithm"] for entry in grid) == DEFAULT_POOL_ALGORITHMS | HIGHMEM_ALGORITHMS
    assert len(grid) == 12
    highmem = [entry["algorithm"] for entry in grid if entry.get("profile") == "highmem"]
    assert Counter(highmem) == HIGHMEM_ALGORITHMS
    # What the two mapped train tasks expand to: plan_grid splits the grid by pool, each candidate once.
    plans = {
        pool: dag.get_task(task_id).python_callable(pool, params=dag.params)
        for pool, task_id in (("default", "plan_grid"), ("highmem", "plan_grid_highmem"))
    }
    assert {pool: len(plan) for pool, plan in plans.items()} == {"default": 8, "highmem": 4}
    assert sorted(p["step_params"]["candidate"][:2] for plan in plans.values() for p in plan) == [
        f"{i:02d}" for i in range(12)
    ]
    assert Counter(p["step_params"]["algorithm"] for p in plans["highmem"]) == HIGHMEM_ALGORITHMS
    assert dag.get_task("train_highmem").queue == "highmem"
    assert dag.get_task("champion").trigger_rule == "all_done"
    assert [o.name for o in dag.get_task("publish").outlets] == ["model/breast-cancer-classifier"]


def test_batch_scoring_runs_on_the_model_asset_or_every_15_minutes(dagbag) -> None:
    from airflow.sdk import AssetOrTimeSchedule

    dag = dagbag.dags["batch_scoring"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "*/15 * * * *"
    assert dag.timetable.asset_condition.name == "model/breast-cancer-classifier"
    assert dag.catchup is False


def test_daily_features_is_daily_without_catchup_and_never_depends_on_past(dagbag) -> None:
    dag = dagbag.dags["daily_features"]
    assert dag.schedule == "@daily" and dag.catchup is False
    assert not any(task.depends_on_past for task in dag.tasks)


def test_a_mapped_queue_is_refused_at_import_with_the_reason(tmp_path) -> None:
    (tmp_path / "mapped_queue.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG\n"
        "from sluice.operators import MLStepOperator\n"
        "with DAG('mapped_queue', schedule=None, start_date=datetime(2026, 1, 1)):\n"
        "    MLStepOperator.partial(task_id='t', image='ml-steps', command=['x']).expand_kwargs(\n"
        "        [{'queue': 'highmem', 'step_params': {}}])\n"
    )
    problems = check_dag_folder(tmp_path)
    assert len(problems) == 1 and "'queue' is mapped (expand)" in problems[0], problems


def test_every_task_has_an_owner_other_than_the_default(dagbag) -> None:
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag.dag_id}.{task.task_id} has no owner"


# Airflow gives a task that sets no `retries` the `[core] default_task_retries` (0), so a parsed task cannot tell
# "retries=0" from "not set". The DAGs are parsed in a fresh process whose default is a number no DAG declares.
UNSET_RETRIES = 9731
UNSET_RETRIES_PARSE = """
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
unset = int(os.environ["AIRFLOW__CORE__DEFAULT_TASK_RETRIES"])
found = {}
for folder in sys.argv[1:]:
    bag = DagBag(dag_folder=folder)
    assert not bag.import_errors, bag.import_errors
    found[folder] = sorted(
        f"{dag.dag_id}.{task.task_id}" for dag in bag.dags.values() for task in dag.tasks if task.retries == unset
    )
print(json.dumps(found))
"""

HALF_DECLARED = """
from datetime import datetime
from airflow.sdk import DAG, task
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("half_declared", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "me"}):
    EmptyOperator(task_id="declared_zero", retries=0)
    EmptyOperator(task_id="undeclared")

    @task(retries=0)
    def mapped_declared(x): ...

    @task
    def mapped_undeclared(x): ...

    mapped_declared.expand(x=[1, 2])
    mapped_undeclared.expand(x=[1, 2])
"""


def tasks_without_declared_retries(*folders: Path) -> dict[str, list[str]]:
    env = {**os.environ, "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": str(UNSET_RETRIES)}
    proc = subprocess.run(
        [sys.executable, "-c", UNSET_RETRIES_PARSE, *map(str, folders)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_every_task_declares_retries(tmp_path: Path) -> None:
    (tmp_path / "half_declared.py").write_text(HALF_DECLARED)
    found = tasks_without_declared_retries(REPO / "dags", tmp_path)
    assert found[str(tmp_path)] == ["half_declared.mapped_undeclared", "half_declared.undeclared"], (
        "the check tells a task that sets no retries from one that sets 0"
    )
    assert found[str(REPO / "dags")] == [], "these tasks set no retries (in the task or the DAG's default_args)"


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
