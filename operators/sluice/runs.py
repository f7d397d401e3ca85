"""Run a DAG on the embedded default and read back what happened (states, metrics, artifacts).

Used by ``sluice demo`` and by the pipeline tests, so what a user sees is what the tests assert.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sluice import artifacts, compat
from sluice.errors import SluiceError

log = logging.getLogger(__name__)


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
    def cache_state(self) -> str:
        """hit, miss, off (step opted out, cache disabled, or no code identity: a mutable image tag without
        cache_version; the reason is in the result's ``cache.off`` and the task log), or empty when the task
        left no result."""
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

    def mapped(self, task_id: str) -> list[TaskOutcome]:
        """The instances of a mapped task, by map index."""
        return sorted((t for t in self.tasks if t.task_id == task_id and t.map_index >= 0), key=lambda t: t.map_index)

    @property
    def mapped_count(self) -> int:
        """How many mapped task instances the run expanded to (all mapped tasks together)."""
        return sum(1 for t in self.tasks if t.map_index >= 0)

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


def write_demo_data(directory: Path) -> None:
    """The demo's two sources, made from a dataset scikit-learn ships (nothing is downloaded)."""
    if (directory / "measurements.csv").exists() and (directory / "measurements.db").exists():
        return
    require_steps_package()
    subprocess.run(
        [sys.executable, "-m", "sluice_steps.demo_data", str(directory)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# The sharded pipeline's demo set: 200 k rows in 4 shards (`python -m sluice_steps.synth`; kept once made).
SHARDED_DEMO_ROWS, SHARDED_DEMO_SHARD_ROWS = 200_000, 50_000


def write_sharded_demo_data(
    directory: Path, rows: int = SHARDED_DEMO_ROWS, shard_rows: int = SHARDED_DEMO_SHARD_ROWS
) -> None:
    """``sharded_training``'s source: a generated set (nothing downloaded); the generator keeps a set that
    already has these figures."""
    require_steps_package()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice_steps.synth",
            str(directory),
            "--rows",
            str(rows),
            "--shard-rows",
            str(shard_rows),
        ],
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
    dag = load_dag(dag_id, dags_folder)
    dr = dag.test(run_conf=conf) if logical_date is None else dag.test(run_conf=conf, logical_date=logical_date)
    return collect(dag_id, dr.run_id)


def run_existing(dag_id: str, dags_folder: Path, run_id: str) -> RunOutcome:
    """Run a DAG run someone else created (a backfill, the scheduler's timer or an asset event) to the end,
    in this process, the way ``dag.test()`` runs its own: same task loop, steps as local processes.

    ``dag.test()`` always creates a fresh manual run; here its run factory hands it the existing run instead
    (``sluice.compat.dag_test_run``: Airflow 3.3 offers no public way to run an existing run without a
    scheduler), so the run keeps its id, type, logical date, data interval and conf.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    compat.require(compat.Feature.RUNS_RUN_EXISTING)
    dag = load_dag(dag_id, dags_folder)
    with create_session() as session:
        dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if dr is None:
            raise KeyError(f"DAG {dag_id!r} has no run {run_id!r}")
        logical_date = dr.logical_date

    def existing_run(*, dag: Any, session: Any, start_date: Any, **_: Any) -> Any:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        run.state = DagRunState.RUNNING
        run.start_date = start_date
        run.dag = dag
        session.commit()
        # Task instances of a run the scheduler created but never examined are made on first update.
        run.verify_integrity(session=session, dag_version_id=run.created_dag_version_id)
        session.commit()
        return run

    with compat.dag_test_run(existing_run):
        dag.test(logical_date=logical_date)
    return collect(dag_id, run_id)


def backfill(
    dag_id: str,
    dags_folder: Path,
    from_date: datetime,
    to_date: datetime,
    conf: dict[str, Any] | None = None,
) -> list[RunOutcome]:
    """``airflow backfill create`` (the same call), then run each run it created, oldest first.

    Airflow 3 backfills are executed by the scheduler; with no scheduler here, ``run_existing`` plays its
    part for each run, then the backfill is marked complete as the scheduler would.
    """
    from datetime import UTC

    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    load_dag(dag_id, dags_folder)  # parses and fails clearly on import errors
    backfill_id = create_backfill(dag_id, from_date, to_date, conf)
    with create_session() as session:
        run_ids = session.scalars(
            select(DagRun.run_id).where(DagRun.backfill_id == backfill_id).order_by(DagRun.logical_date)
        ).all()
    outcomes = [run_existing(dag_id, dags_folder, run_id) for run_id in run_ids]
    with create_session() as session:
        row = session.get(Backfill, backfill_id)
        if row is None:  # created above: gone only if something deleted it meanwhile
            raise RuntimeError(f"backfill {backfill_id} of {dag_id} was deleted while its runs ran")
        row.completed_at = datetime.now(UTC)
    return outcomes


def create_backfill(dag_id: str, from_date: datetime, to_date: datetime, conf: dict[str, Any] | None) -> int:
    """Create a backfill (one run at a time, oldest first) and return its id.

    In-process through what ``airflow backfill create`` calls, where ``sluice.compat`` finds it as tested;
    else through the CLI itself (a few seconds more), logging why once.
    """
    from airflow.models.backfill import Backfill
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    problem = compat.problem(compat.Feature.RUNS_BACKFILL)
    if problem is None:
        created = compat.create_backfill()(
            dag_id=dag_id,
            from_date=from_date,
            to_date=to_date,
            max_active_runs=1,
            reverse=False,
            dag_run_conf=conf,
            triggering_user_name="sluice",
        )
        return int(created.id)
    log.warning("creating the backfill with `airflow backfill create`: %s", problem)
    with create_session() as session:
        before = session.scalar(select(func.max(Backfill.id)).where(Backfill.dag_id == dag_id)) or 0
    argv = [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", dag_id, "--max-active-runs", "1"]
    argv += ["--from-date", from_date.isoformat(), "--to-date", to_date.isoformat()]
    if conf:
        argv += ["--dag-run-conf", json.dumps(conf)]
    done = subprocess.run(argv, capture_output=True, text=True)
    with create_session() as session:
        backfill_id = session.scalar(select(func.max(Backfill.id)).where(Backfill.dag_id == dag_id))
    if done.returncode or not backfill_id or backfill_id <= before:
        output = f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        raise RuntimeError(f"`airflow backfill create` created no backfill:\n{output}")
    return int(backfill_id)


def set_paused(dag_ids: list[str], paused: bool, dags_folder: Path) -> None:
    """Pause or unpause DAGs (parsing the folder into the DB first, so they exist there). A paused DAG gets
    no scheduled runs, and Airflow queues no asset-triggered run for it either."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(dags_folder)), "dags-folder", None)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=paused))


def create_due_runs(dag_ids: list[str]) -> list[tuple[str, str, str]]:
    """Let the scheduler create the runs that are due now (timer) or triggered (asset events) for these
    DAGs, exactly as one pass of its loop does, without running them; returns (dag_id, run_id, run_type)
    created. The DAGs are unpaused for the pass and paused again after it. One pass creates at most one run
    per DAG (an asset-triggered one first): call again for the next."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.sqlalchemy import prohibit_commit
    from sqlalchemy import select, update

    compat.require(compat.Feature.RUNS_CREATE_DUE_RUNS)
    with create_session() as session:
        before = set(session.scalars(select(DagRun.run_id).where(DagRun.dag_id.in_(dag_ids))).all())
        session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=False))
    runner = SchedulerJobRunner(job=Job(), executors=[])
    try:
        with create_session() as session, prohibit_commit(session) as guard:
            compat.create_dagruns_for_dags(runner, guard, session)
            guard.commit()
    finally:
        with create_session() as session:
            session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=True))
    with create_session() as session:
        rows = session.execute(select(DagRun.dag_id, DagRun.run_id, DagRun.run_type).where(DagRun.dag_id.in_(dag_ids)))
        return [(d, r, str(t)) for d, r, t in rows if r not in before]


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
