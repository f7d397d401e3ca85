"""The per-pool KEDA query on a real PostgreSQL with the real Airflow 3.3 schema: replicas per pool."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sluice.platform import Pool
from sluice.scaling import INDEX_NAME, desired_replicas, ensure_index, pool_load_sql

pytestmark = pytest.mark.integration
POOLS = {
    "default": Pool(name="default", queues=["default"], concurrency=8),
    "highmem": Pool(
        name="highmem", queues=["highmem", "bigjoin"], concurrency=2, autoscaling={"minReplicas": 0, "maxReplicas": 2}
    ),
    "gpu": Pool(name="gpu", queues=["gpu"], concurrency=1, autoscaling={"minReplicas": 0, "maxReplicas": 3}),
}
# (queue, state, executor, count): every state, every queue, NULL and explicit executors.
ROWS = [
    ("default", "queued", None, 5),
    ("default", "running", None, 7),
    ("default", "running", "CeleryExecutor", 2),
    ("default", "success", None, 40),
    ("default", "failed", None, 3),
    ("default", "scheduled", None, 4),
    ("default", "up_for_retry", None, 2),
    ("default", "deferred", None, 1),
    # KubernetesExecutor tasks that kept queue='default' must not count for the default pool.
    ("default", "running", "KubernetesExecutor", 6),
    ("kubernetes", "queued", "KubernetesExecutor", 3),
    ("highmem", "queued", None, 1),
    ("bigjoin", "running", None, 2),
    ("highmem", "success", None, 9),
    ("gpu", "success", None, 4),
    ("gpu", "failed", None, 1),
]
EXPECTED_NEEDED = {"default": 2, "highmem": 2, "gpu": 0}  # ceil(14/8), ceil(3/2), nothing active


@pytest.fixture(scope="module")
def engine(airflow_postgres: str):
    engine = sa.create_engine(airflow_postgres)
    counter = itertools.count()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, state) "
                "VALUES ('d', 'r', 'manual', :now, 'running')"
            ),
            {"now": datetime.now(UTC)},
        )
        for queue, state, executor, count in ROWS:
            for _ in range(count):
                conn.execute(
                    sa.text(
                        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, "
                        "max_tries, pool, pool_slots, queue, state, executor) VALUES (gen_random_uuid(), :task, "
                        "'d', 'r', -1, 1, 0, 'default_pool', 1, :queue, :state, :executor)"
                    ),
                    {"task": f"t{next(counter)}", "queue": queue, "state": state, "executor": executor},
                )
    yield engine
    engine.dispose()


def needed(engine, pool: Pool) -> float:
    with engine.connect() as conn:
        return float(conn.execute(sa.text(pool_load_sql(pool))).scalar_one())


@pytest.mark.parametrize("name", sorted(POOLS))
def test_query_returns_the_workers_each_pool_needs(engine, name: str) -> None:
    assert needed(engine, POOLS[name]) == EXPECTED_NEEDED[name]


def test_not_equal_would_have_missed_the_null_executor_rows(engine) -> None:
    """The trap the query avoids: ``executor != 'KubernetesExecutor'`` drops NULL executors."""
    wrong = pool_load_sql(POOLS["default"]).replace("IS DISTINCT FROM", "!=")
    with engine.connect() as conn:
        assert float(conn.execute(sa.text(wrong)).scalar_one()) == 1  # only the 2 explicit Celery rows


@pytest.mark.parametrize(("name", "replicas"), [("default", 2), ("highmem", 2), ("gpu", 0)])
def test_replicas_are_clamped_to_the_pools_bounds(engine, name: str, replicas: int) -> None:
    assert desired_replicas(needed(engine, POOLS[name]), POOLS[name]) == replicas


def test_index_is_created_once_and_serves_the_poll_as_an_index_only_scan(engine, airflow_postgres) -> None:
    ensure_index(airflow_postgres)
    ensure_index(airflow_postgres)  # idempotent, as the migration Job runs it on every upgrade
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pg_indexes WHERE indexname = :n"), {"n": INDEX_NAME}
            ).scalar_one()
            == 1
        )
        conn.execute(sa.text("ANALYZE task_instance"))
        conn.execute(sa.text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(sa.text("EXPLAIN " + pool_load_sql(POOLS["default"]))))
    assert INDEX_NAME in plan
