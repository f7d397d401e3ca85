"""Run a DAG on the embedded default and read back what happened (states, metrics, artifacts).

Used by ``sluice demo`` and by the pipeline tests, so what a user sees is what the tests assert.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice import artifacts


@dataclass
class TaskOutcome:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    result: dict[str, Any] | None = None

    @property
    def outputs(self) -> dict[str, str]:
        return (self.result or {}).get("outputs", {})

    @property
    def metrics(self) -> dict[str, Any]:
        return (self.result or {}).get("metrics", {})

    @property
    def cache_hit(self) -> bool:
        return bool((self.result or {}).get("cache", {}).get("hit"))

    @property
    def cache_state(self) -> str:
        """hit, miss, off (step opted out or cache disabled), or empty when the task left no result."""
        if not self.result:
            return ""
        cache = self.result.get("cache", {})
        return "hit" if cache.get("hit") else ("miss" if cache.get("key") else "off")


@dataclass
class RunOutcome:
    dag_id: str
    run_id: str
    state: str | None
    tasks: list[TaskOutcome] = field(default_factory=list)

    @property
    def artifact_prefix(self) -> str:
        """The run's artifact prefix (``{root}/{dag_id}/{run_id}``) from the outputs it reported."""
        marker = f"/{self.dag_id}/{self.run_id}/"
        for task in self.tasks:
            for uri in task.outputs.values():
                if marker in uri:
                    return uri[: uri.index(marker) + len(marker) - 1]
        return ""

    def task(self, task_id: str) -> TaskOutcome:
        return next(t for t in self.tasks if t.task_id == task_id)

    @property
    def succeeded(self) -> bool:
        return self.state == "success" and all(t.state == "success" for t in self.tasks)


def write_demo_data(directory: Path) -> None:
    """The demo's two sources, made from a dataset scikit-learn ships (nothing is downloaded)."""
    if (directory / "measurements.csv").exists() and (directory / "measurements.db").exists():
        return
    subprocess.run(
        [sys.executable, "-m", "sluice_steps.demo_data", str(directory)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def load_dag(dag_id: str, dags_folder: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        problems = "\n".join(f"{path}: {err.strip()}" for path, err in bag.import_errors.items())
        raise RuntimeError(f"DAGs failed to import:\n{problems}")
    dag = bag.dags.get(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {dags_folder}; DAGs there: {', '.join(sorted(bag.dags))}")
    return dag


def collect(dag_id: str, run_id: str) -> RunOutcome:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        results = {
            (x.task_id, x.map_index): XComModel.deserialize_value(x)
            for x in session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value"))
        }
        outcome = RunOutcome(dag_id=dag_id, run_id=run_id, state=str(dr.state) if dr else None)
        for ti in sorted(tis, key=lambda t: (t.start_date is None, t.start_date, t.task_id, t.map_index)):
            result = results.get((ti.task_id, ti.map_index))
            outcome.tasks.append(
                TaskOutcome(
                    task_id=ti.task_id,
                    map_index=ti.map_index,
                    state=str(ti.state) if ti.state else None,
                    try_number=ti.try_number,
                    result=result if isinstance(result, dict) else None,
                )
            )
    return outcome


def run_dag(dag_id: str, dags_folder: Path, conf: dict[str, Any] | None = None) -> RunOutcome:
    dag = load_dag(dag_id, dags_folder)
    dr = dag.test(run_conf=conf)
    return collect(dag_id, dr.run_id)


def run_dag_object(dag: Any, conf: dict[str, Any] | None = None) -> RunOutcome:
    """Run a DAG built in memory (a test's, a notebook's): register it in the DB, then ``dag.test()``.

    ``dag.test()`` only runs DAGs the metadata DB knows, and only files in a bundle get there by parsing.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=None, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    dr = dag.test(run_conf=conf)
    return collect(dag.dag_id, dr.run_id)


def local_display(uri: str) -> str:
    return artifacts.local_path(uri) or uri
