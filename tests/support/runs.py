"""How the tests run DAGs beyond what ``sluice demo`` does (``sluice.runs``: run a DAG file, read a run back).

Without a scheduler, they run what only a scheduler runs: a backfill's runs (``backfill``), the runs due on a
timer or an asset event (``create_due_runs`` then ``run_existing``), and a DAG built in memory
(``run_dag_object``). The private Airflow symbols this needs are gated in tests/support/airflow_private.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sluice.runs import RunOutcome, collect, load_dag

from tests.support import airflow_private
from tests.support.airflow_private import Feature

log = logging.getLogger(__name__)


def run_existing(dag_id: str, dags_folder: Path, run_id: str) -> RunOutcome:
    """Run a DAG run someone else created (a backfill, the scheduler's timer or an asset event) to the end,
    in this process, the way ``dag.test()`` runs its own: same task loop, steps as local processes.

    ``dag.test()`` always creates a fresh manual run; here its run factory hands it the existing run instead
    (``airflow_private.dag_test_run``: Airflow 3.3 offers no public way to run an existing run without a
    scheduler), so the run keeps its id, type, logical date, data interval and conf.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    airflow_private.require(Feature.RUN_EXISTING)
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

    with airflow_private.dag_test_run(existing_run):
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

    In-process through what ``airflow backfill create`` calls, where ``airflow_private`` finds it as tested;
    else through the CLI itself (a few seconds more), logging why once.
    """
    from airflow.models.backfill import Backfill
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    problem = airflow_private.problem(Feature.BACKFILL)
    if problem is None:
        created = airflow_private.create_backfill()(
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

    airflow_private.require(Feature.CREATE_DUE_RUNS)
    with create_session() as session:
        before = set(session.scalars(select(DagRun.run_id).where(DagRun.dag_id.in_(dag_ids))).all())
        session.execute(update(DagModel).where(DagModel.dag_id.in_(dag_ids)).values(is_paused=False))
    runner = SchedulerJobRunner(job=Job(), executors=[])
    try:
        with create_session() as session, prohibit_commit(session) as guard:
            airflow_private.create_dagruns_for_dags(runner, guard, session)
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
