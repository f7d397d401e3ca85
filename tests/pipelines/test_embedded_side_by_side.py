"""The embedded default runs independent tasks side by side (sluice.embedded_run), with Airflow's semantics intact.

Real Airflow: dag.test() through the LocalExecutor, task processes talking to the Task Execution API this test
process serves. Side by side is proven by behaviour, not by timing: each of two independent tasks waits for the
other to have started, which only succeeds when both run at once.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from sluice import embedded_run, runs

pytestmark = pytest.mark.slow  # whole DAG runs through Airflow (~10 s each)

DAG_FILE = '''
from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

MARKS = Path({marks!r})


def meet(me: str, other: str) -> str:
    """Say I started; wait (bounded) for the other task to say so: only two tasks running at once both get past."""
    (MARKS / me).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (MARKS / other).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{{other}} never started while {{me}} ran: the tasks ran one at a time")
        time.sleep(0.05)
    return me


with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

    @task
    def left() -> str:
        return meet("left", "right")

    @task
    def right() -> str:
        return meet("right", "left")

    @task
    def joined(a: str, b: str) -> str:
        return a + "+" + b

    @task(retries=0)
    def broken() -> None:
        raise ValueError("this task fails on purpose")

    @task
    def after_broken() -> None:
        (MARKS / "after_broken").write_text("ran")

    joined(left(), right())
    broken() >> after_broken()
'''


def register(folder: Path) -> None:
    """Put the folder's DAGs in the metadata DB: dag.test() runs only DAGs it knows, and it syncs only the
    configured DAG folder (as tests/support/runs.run_dag_object does for a DAG built in memory)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(folder)), "dags-folder", None)


@pytest.fixture
def side_by_side_dag(tmp_path: Path, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, Path]:
    monkeypatch.setenv(embedded_run.ENV, "2")
    dag_id = f"side_by_side_{tmp_path.name.replace('-', '_')}"[:200]
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "side_by_side.py").write_text(textwrap.dedent(DAG_FILE.format(marks=str(marks), dag_id=dag_id)))
    register(folder)
    return dag_id, folder, marks


def test_independent_tasks_run_at_the_same_time(side_by_side_dag: tuple[str, Path, Path]) -> None:
    dag_id, folder, marks = side_by_side_dag
    outcome = runs.run_dag(dag_id, folder)
    assert outcome.task("left").state == "success"
    assert outcome.task("right").state == "success"
    assert outcome.task("joined").state == "success"
    assert (marks / "left").read_text() != (marks / "right").read_text()  # two task processes, not one


def test_a_failed_task_does_not_run_its_children(side_by_side_dag: tuple[str, Path, Path]) -> None:
    dag_id, folder, marks = side_by_side_dag
    outcome = runs.run_dag(dag_id, folder)
    assert outcome.state == "failed"
    assert outcome.task("broken").state == "failed"
    assert outcome.task("after_broken").state == "upstream_failed"
    assert not (marks / "after_broken").exists()


def test_the_environment_is_restored_after_a_run(side_by_side_dag: tuple[str, Path, Path]) -> None:
    dag_id, folder, _ = side_by_side_dag
    names = ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__API_AUTH__JWT_SECRET")
    before = {name: os.environ.get(name) for name in names}
    runs.run_dag(dag_id, folder)
    assert {name: os.environ.get(name) for name in before} == before
