"""Cost of the per-pool KEDA scaling query on PostgreSQL with a real Airflow 3.3 schema.

Side by side in one run, on the same data: the official chart's query (``state='running' OR
state='queued'``, no extra index) and Sluice's (``state IN (...)`` + the partial covering index the
migration Job creates), each before and after the index exists. Realistic state mix: ~0.1 % of rows
active (queued/running), the rest finished; NULL, Celery and Kubernetes executors mixed.

    .venv/bin/python bench/scaling_query.py --rows 1000000 5000000 [--dsn postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from sluice.platform import Pool
from sluice.scaling import INDEX_NAME, ensure_index, pool_load_sql

POOLS = [
    Pool(name="default", queues=["default"], concurrency=8),
    Pool(name="highmem", queues=["highmem"], concurrency=2),
    Pool(name="gpu", queues=["gpu"], concurrency=1),
]
OFFICIAL = (
    "SELECT ceil(COUNT(*)::decimal / {c}) FROM task_instance WHERE (state = 'running' OR state = 'queued') "
    "AND queue IN ({q}) AND executor IS DISTINCT FROM 'KubernetesExecutor'"
)
TASKS_PER_RUN = 20
ACTIVE = 5000


def official_sql(pool: Pool) -> str:
    return OFFICIAL.format(c=pool.concurrency, q=", ".join(f"'{q}'" for q in pool.queues))


def migrate(url: str) -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True
        )


def fill(engine: sa.Engine, rows: int) -> float:
    runs = rows // TASKS_PER_RUN
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, state) "
                "SELECT 'd' || (g % 50), 'r' || g, 'scheduled', now(), 'success' FROM generate_series(1, :runs) g"
            ),
            {"runs": runs},
        )
        # Finished rows first, then a realistic active set on the last runs.
        conn.execute(
            sa.text(
                "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, pool, "
                "pool_slots, queue, state, executor) "
                "SELECT gen_random_uuid(), 't' || (g % :tpr), 'd' || ((g / :tpr + 1) % 50), "
                "'r' || (g / :tpr + 1), -1, 1, 1, "
                "'default_pool', 1, (ARRAY['default','default','default','highmem','gpu','kubernetes'])[1 + g % 6], "
                "CASE WHEN g > :finished THEN (ARRAY['queued','running'])[1 + g % 2] "
                "     ELSE (ARRAY['success','success','success','success','failed','skipped','upstream_failed'])"
                "[1 + g % 7] END, "
                "(ARRAY[NULL, NULL, NULL, 'CeleryExecutor', 'KubernetesExecutor'])[1 + g % 5] "
                "FROM generate_series(0, :rows - 1) g"
            ),
            {"tpr": TASKS_PER_RUN, "rows": runs * TASKS_PER_RUN, "finished": runs * TASKS_PER_RUN - ACTIVE - 1},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE task_instance"))
    return time.perf_counter() - started


def timed(engine: sa.Engine, sql: str, repeats: int) -> tuple[float, str]:
    with engine.connect() as conn:
        conn.execute(sa.text(sql)).scalar_one()  # warm the cache: KEDA polls every few seconds
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            conn.execute(sa.text(sql)).scalar_one()
            samples.append((time.perf_counter() - started) * 1000)
        plan = [r[0] for r in conn.execute(sa.text("EXPLAIN (ANALYZE, COSTS OFF) " + sql))]
    scan = next((line.strip().lstrip("-> ").split("  ")[0] for line in plan if "Scan" in line), plan[0])
    return statistics.median(samples), scan


def measure(engine: sa.Engine, repeats: int) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for pool in POOLS:
        for name, sql in (("official", official_sql(pool)), ("sluice", pool_load_sql(pool))):
            ms, scan = timed(engine, sql, repeats)
            out[f"{pool.name}/{name}"] = {"median_ms": round(ms, 3), "plan": scan}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--dsn", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=Path("bench/results/scaling_query.json"))
    args = parser.parse_args()

    admin = sa.create_engine(f"{args.dsn}/postgres", isolation_level="AUTOCOMMIT")
    figures = {}
    for rows in args.rows:
        name = f"sluice_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = f"{args.dsn}/{name}"
        try:
            migrate(url)
            engine = sa.create_engine(url)
            fill_s = fill(engine, rows)
            before = measure(engine, args.repeats)
            ensure_index(url)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE task_instance"))
                index_kb = conn.execute(sa.text("SELECT pg_relation_size(:i) / 1024"), {"i": INDEX_NAME}).scalar_one()
            after = measure(engine, args.repeats)
            engine.dispose()
            figures[rows] = {
                "fill_seconds": round(fill_s, 1),
                "index_kb": index_kb,
                "without_index": before,
                "with_sluice_index": after,
            }
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        print(f"\n{rows:,} task_instance rows ({ACTIVE:,} active), index {figures[rows]['index_kb']} kB")
        print(f"{'pool/query':20}{'no index ms':>14}{'sluice index ms':>17}  plan with index")
        for key in before:
            print(f"{key:20}{before[key]['median_ms']:>14}{after[key]['median_ms']:>17}  {after[key]['plan']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
