"""Run a DAG on the embedded default and read back what happened (states, metrics, artifacts).

Used by ``sluice demo`` (which also reads a stack's run with ``collect``) and by the pipeline tests, so what a user
sees is what the tests assert. The tests' own ways of running (a backfill, the scheduler's due runs, a DAG built in
memory) are in tests/support/runs.py.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sluice import artifacts
from sluice.errors import SluiceError

# A mapped step's hand-off (its task's time that is not the step's own) above this share of the step's time:
# its instances are too small for what each costs to start and finish (docs/pipelines.md, "Shard size").
HANDOFF_SHARE = 0.10


@dataclass
class TaskOutcome:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    result: dict[str, Any] | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None

    @property
    def outputs(self) -> dict[str, str]:
        outputs: dict[str, str] = (self.result or {}).get("outputs", {})
        return outputs

    @property
    def metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = (self.result or {}).get("metrics", {})
        return metrics

    @property
    def peak_memory(self) -> tuple[int, int] | None:
        """(peak resident bytes of the step's process tree, its profile's memory) when the launcher measured it."""
        resources = (self.result or {}).get("resources") or {}
        peak, limit = resources.get("peak_rss_bytes"), resources.get("memory_limit_bytes")
        return (int(peak), int(limit)) if peak is not None and limit is not None else None

    @property
    def cache_hit(self) -> bool:
        return bool((self.result or {}).get("cache", {}).get("hit"))

    @property
    def step_seconds(self) -> float | None:
        """The step's own time, from its process's start to its result (the times its result records)."""
        result = self.result or {}
        if "started_at" not in result or "finished_at" not in result:
            return None
        finished, started = datetime.fromisoformat(result["finished_at"]), datetime.fromisoformat(result["started_at"])
        return (finished - started).total_seconds()

    @property
    def handoff_seconds(self) -> float | None:
        """The task's time that was not its step's: Airflow's task protocol (the task process's start, the DAG
        parse, XCom, rendered fields, the state report) and the launcher's start and finish of the step. The step
        cache's hashing is left out (a new file version's first digest is paid once, not per task); None for a
        cache hit (no step ran) or a task that left no step times."""
        step = self.step_seconds
        if step is None or self.cache_hit or self.start_date is None or self.end_date is None:
            return None
        cache = (self.result or {}).get("cache") or {}
        hashing = float(cache.get("key_seconds", 0.0)) + float(cache.get("store_seconds", 0.0))
        return max(0.0, (self.end_date - self.start_date).total_seconds() - step - hashing)

    @property
    def cache_state(self) -> str:
        """hit, miss, off (step opted out, cache disabled, or no code identity: a mutable image tag without
        cache_version; the reason is in the result's ``cache.off`` and the task log), or empty when the task
        left no result."""
        if not self.result:
            return ""
        cache = self.result.get("cache", {})
        return "hit" if cache.get("hit") else ("miss" if cache.get("key") else "off")


@dataclass(frozen=True)
class Handoff:
    """A mapped step's median hand-off against its instances' median step time."""

    task_id: str
    instances: int
    handoff_seconds: float
    step_seconds: float

    @property
    def share(self) -> float:
        return self.handoff_seconds / self.step_seconds if self.step_seconds > 0 else float("inf")

    @property
    def too_small(self) -> bool:
        return self.share > HANDOFF_SHARE

    @property
    def growth(self) -> float:
        """How many times more work per instance (rows per shard) would bring the share to HANDOFF_SHARE."""
        return self.share / HANDOFF_SHARE


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

    def mapped(self, task_id: str) -> list[TaskOutcome]:
        """The instances of a mapped task, by map index."""
        return sorted((t for t in self.tasks if t.task_id == task_id and t.map_index >= 0), key=lambda t: t.map_index)

    @property
    def mapped_count(self) -> int:
        """How many mapped task instances the run expanded to (all mapped tasks together)."""
        return sum(1 for t in self.tasks if t.map_index >= 0)

    def handoffs(self) -> list[Handoff]:
        """Per mapped step that ran (cache hits aside): what its instances' hand-off costs against their work."""
        out = []
        for task_id in sorted({t.task_id for t in self.tasks if t.map_index >= 0}):
            timed = [(t.handoff_seconds, t.step_seconds) for t in self.mapped(task_id)]  # each read once
            pairs = [(handoff, step) for handoff, step in timed if handoff is not None and step is not None]
            if pairs:
                handoff = statistics.median(h for h, _ in pairs)
                step = statistics.median(s for _, s in pairs)
                out.append(Handoff(task_id, len(pairs), handoff, step))
        return out

    @property
    def succeeded(self) -> bool:
        return self.state == "success" and all(t.state == "success" for t in self.tasks)


STEPS_PACKAGE = "sluice_steps"


class StepsNotInstalled(SluiceError, RuntimeError):
    """The demo's data and steps come from the step package (distribution sluice-steps), absent here."""


def require_steps_package() -> None:
    """The examples' data generators and ``sluice-step`` are the step package's: say so rather than a traceback."""
    if importlib.util.find_spec(STEPS_PACKAGE) is None:
        raise StepsNotInstalled(
            f"the example pipelines' data and steps come from the step package ({STEPS_PACKAGE}, distribution "
            f"sluice-steps), which is not installed in this environment ({sys.prefix}): install it beside sluice "
            "(README, 'Install as a library')"
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
        # Airflow annotates get_many as Select[tuple[XComModel]], SQLAlchemy 2.0's spelling; under 2.1 that reads
        # as a select of tuples, while the rows' scalars are XComModel objects.
        xcoms = cast(
            "Sequence[XComModel]",
            session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all(),
        )
        results = {(x.task_id, x.map_index): XComModel.deserialize_value(x) for x in xcoms}
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
                    start_date=ti.start_date,
                    end_date=ti.end_date,
                )
            )
    return outcome


def run_dag(
    dag_id: str, dags_folder: Path, conf: dict[str, Any] | None = None, logical_date: datetime | None = None
) -> RunOutcome:
    return run_loaded(load_dag(dag_id, dags_folder), conf, logical_date)


def run_loaded(dag: Any, conf: dict[str, Any] | None = None, logical_date: datetime | None = None) -> RunOutcome:
    """Run a DAG ``load_dag`` returned with ``dag.test()`` (steps as local processes) and read the run back: its
    independent tasks side by side up to the cores (``sluice.embedded_run``), or one at a time where that does not
    apply (``SLUICE_PARALLELISM=1``, one core)."""
    from sluice import embedded_run

    if embedded_run.side_by_side(dag):
        dr = embedded_run.run(dag, conf, logical_date)
    elif logical_date is None:
        dr = dag.test(run_conf=conf)
    else:
        dr = dag.test(run_conf=conf, logical_date=logical_date)
    return collect(dag.dag_id, dr.run_id)


def local_display(uri: str) -> str:
    return artifacts.local_path(uri) or uri
