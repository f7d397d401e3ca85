"""Cost of the per-pool KEDA scaling query on PostgreSQL with a real Airflow 3.3 schema, fresh and after a
simulated day of churn.

Side by side in one run, on the same data: the official chart's query (``state='running' OR
state='queued'``, no extra index: Sluice's index is dropped inside a rolled-back transaction for its
polls) and Sluice's (``state IN (...)`` + the partial covering index ``ensure-index`` builds).
Realistic state mix: 5,000 active task instances (queued/running), the rest finished; NULL, Celery and
Kubernetes executors mixed. p50 and p95 of each pool's poll, warm cache, in five phases:

- fresh: just filled, VACUUM ANALYZE, index built;
- during the day: ``--day-inserts`` new task instances walk scheduled -> queued -> running -> success or
  failed (3 state moves each) in ``--ticks`` steps, while running ones heartbeat (``--heartbeats`` in all;
  every heartbeat is a new row version and a new entry in every index, Airflow's ``ti_heartbeat``
  indexes the column). Autovacuum is off on task_instance and the bench does what it would do on a
  5 M-row table (``--model-rows``) at any size, deterministically: no VACUUM in the day (its default
  threshold, ~1 M dead rows, comes on day 2) and an ANALYZE after every ~500 k changed rows. Every
  pool's queries are polled once per tick, as KEDA polls all day;
- end of day: the same polls, repeated, after the last tick;
- after ``VACUUM`` of task_instance (what autovacuum eventually does);
- after ``REINDEX INDEX CONCURRENTLY`` of Sluice's index on top of that (Sluice's query only): the
  size a VACUUM cannot give back.

    .venv/bin/python bench/scaling_query.py                  # 500 k rows and one day: a few minutes
    .venv/bin/python bench/scaling_query.py --rows 5000000   # the 5 M-row figure
"""

from __future__ import annotations

import argparse
import collections
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
QUEUES = "ARRAY['default','default','default','highmem','gpu','kubernetes']"
EXECUTORS = "ARRAY[NULL, NULL, NULL, 'CeleryExecutor', 'KubernetesExecutor']"
PHASES = ("fresh", "during the day", "end of day", "after VACUUM", "after REINDEX")


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
                f"'default_pool', 1, ({QUEUES})[1 + g % 6], "
                "CASE WHEN g > :finished THEN (ARRAY['queued','running'])[1 + (g / 6) % 2] "
                "     ELSE (ARRAY['success','success','success','success','failed','skipped','upstream_failed'])"
                "[1 + g % 7] END, "
                f"({EXECUTORS})[1 + g % 5] "
                "FROM generate_series(0, :rows - 1) g"
            ),
            {"tpr": TASKS_PER_RUN, "rows": runs * TASKS_PER_RUN, "finished": runs * TASKS_PER_RUN - ACTIVE - 1},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE task_instance"))
    return time.perf_counter() - started


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18] if len(samples) > 1 else samples[0]


def poll(conn: sa.Connection, sql: str) -> tuple[float, float]:
    """One poll: (milliseconds, the value KEDA would read)."""
    started = time.perf_counter()
    value = conn.execute(sa.text(sql)).scalar_one()
    return (time.perf_counter() - started) * 1000, float(value)


def plan_of(conn: sa.Connection, sql: str) -> str:
    """The scan nodes, outermost first, with their index: ``Bitmap Heap Scan on task_instance <- Bitmap
    Index Scan on ti_state``, and an index-only scan's heap fetches."""
    plan = [r[0] for r in conn.execute(sa.text("EXPLAIN (ANALYZE, COSTS OFF) " + sql))]
    scans = [line.strip().lstrip("-> ").split("  ")[0].split(" (actual")[0] for line in plan if "Scan" in line]
    fetches = [line.strip().lower() for line in plan if "Heap Fetches" in line]
    return " <- ".join(scans + fetches) or plan[0]


def poll_all(
    engine: sa.Engine, queries: tuple[str, ...], samples: dict[str, list[float]], repeats: int
) -> dict[str, str]:
    """Poll every pool's queries ``repeats`` times into ``samples``; returns each one's plan. The official
    query runs with Sluice's index dropped in a transaction that is rolled back, as if it never existed.
    Both queries must give each pool the same value: a bench of a wrong query is worthless."""
    plans, values = {}, {}
    for name in queries:
        with engine.connect() as conn:
            if name == "official":
                conn.execute(sa.text(f"DROP INDEX {INDEX_NAME}"))
            for pool in POOLS:
                sql = official_sql(pool) if name == "official" else pool_load_sql(pool)
                for _ in range(repeats):
                    ms, values[pool.name, name] = poll(conn, sql)
                    samples[f"{pool.name}/{name}"].append(ms)
                plans[f"{pool.name}/{name}"] = plan_of(conn, sql)
            conn.rollback()
    for pool in POOLS:
        if len({value for (name, _), value in values.items() if name == pool.name}) > 1:
            raise SystemExit(f"the queries disagree on pool {pool.name}: {values}")
    return plans


def summary(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {key: {"p50": round(statistics.median(v), 3), "p95": round(p95(v), 3)} for key, v in samples.items()}


def index_kb(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT pg_relation_size(:i) / 1024"), {"i": INDEX_NAME}).scalar_one()


def autocommit(engine: sa.Engine, sql: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(sql))


class Day:
    """A day of a busy platform in ``ticks`` steps, keeping ~5,000 task instances queued or running."""

    def __init__(self, engine: sa.Engine, inserts: int, heartbeats: int, ticks: int, model_rows: int) -> None:
        self.engine = engine
        # autovacuum's defaults for a table of model_rows: analyze after 50 + 10 %, vacuum after 50 + 20 %
        self.analyze_every = 50 + model_rows // 10
        self.changed = 0
        self.beat_cursor = 0
        self.per_tick = max(1, inserts // ticks)
        self.heartbeats_per_tick = max(0, heartbeats // ticks)
        self.counts = collections.Counter()
        with engine.connect() as conn:
            active = conn.execute(
                sa.text("SELECT id, state FROM task_instance WHERE state IN ('queued', 'running') ORDER BY id")
            ).all()
        self.queued = collections.deque(i for i, state in active if state == "queued")
        self.running = collections.deque(i for i, state in active if state == "running")

    def update(self, ids: list, assignment: str, counter: str) -> None:
        if ids:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text(f"UPDATE task_instance SET {assignment} WHERE id = ANY(CAST(:ids AS uuid[]))"),
                    {"ids": [str(i) for i in ids]},
                )
            self.counts[counter] += len(ids)
            self.changed += len(ids)

    def insert(self, number: int) -> list:
        """New runs: their task instances are created ``scheduled``."""
        runs = max(1, self.per_tick // TASKS_PER_RUN)
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, state) SELECT 'd' || (j % 50), "
                    "'c' || :tick || '_' || j, 'scheduled', now(), 'running' FROM generate_series(0, :runs - 1) j"
                ),
                {"tick": number, "runs": runs},
            )
            ids = list(
                conn.execute(
                    sa.text(
                        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries, "
                        "pool, pool_slots, queue, state, executor, scheduled_dttm) "
                        "SELECT gen_random_uuid(), 't' || (g % :tpr), 'd' || ((g / :tpr) % 50), "
                        "'c' || :tick || '_' || (g / :tpr), -1, 1, 1, 'default_pool', 1, "
                        f"({QUEUES})[1 + g % 6], 'scheduled', ({EXECUTORS})[1 + g % 5], now() "
                        "FROM generate_series(0, :k - 1) g RETURNING id"
                    ),
                    {"tpr": TASKS_PER_RUN, "tick": number, "k": runs * TASKS_PER_RUN},
                ).scalars()
            )
        self.counts["inserts"] += len(ids)
        self.changed += len(ids)
        return ids

    def tick(self, number: int) -> None:
        """One step, each move its own transaction as the scheduler and workers commit them; the active set
        (queued + running) stays the same size."""
        k = self.per_tick
        scheduled = self.insert(number)
        starting = [self.queued.popleft() for _ in range(min(k, len(self.queued)))]
        self.update(starting, "state = 'running', start_date = now(), last_heartbeat_at = now()", "state moves")
        self.running.extend(starting)
        self.update(scheduled, "state = 'queued', queued_dttm = now()", "state moves")
        self.queued.extend(scheduled)
        # running tasks heartbeat, round robin (the running queue keeps its order: oldest finish first)
        running = list(self.running)
        start = self.beat_cursor % max(1, len(running))
        beating = (running[start:] + running[:start])[: self.heartbeats_per_tick]
        self.beat_cursor = start + len(beating)
        self.update(beating, "last_heartbeat_at = now()", "heartbeats")
        finishing = [self.running.popleft() for _ in range(min(k, len(self.running)))]
        self.update(finishing[: k * 9 // 10], "state = 'success', end_date = now()", "state moves")
        self.update(finishing[k * 9 // 10 :], "state = 'failed', end_date = now()", "state moves")
        if self.changed >= self.analyze_every:  # what autoanalyze does; autovacuum stays off for the day
            autocommit(self.engine, "ANALYZE task_instance")
            self.counts["analyzes"] += 1
            self.changed = 0


def bench(url: str, rows: int, args: argparse.Namespace) -> dict[str, object]:
    engine = sa.create_engine(url)
    fill_s = fill(engine, rows)
    ensure_index(url)
    autocommit(engine, "ANALYZE task_instance")
    both = ("official", "sluice")
    sizes = {"fresh": index_kb(engine)}
    polls, plans = {}, {}

    samples: dict[str, list[float]] = collections.defaultdict(list)
    plans["fresh"] = poll_all(engine, both, samples, args.repeats)
    polls["fresh"] = summary(samples)

    autocommit(engine, "ALTER TABLE task_instance SET (autovacuum_enabled = off)")
    day = Day(engine, args.day_inserts, args.heartbeats, args.ticks, max(rows, args.model_rows))
    samples = collections.defaultdict(list)
    started = time.perf_counter()
    polling_s = 0.0
    for number in range(args.ticks):
        day.tick(number)
        poll_started = time.perf_counter()
        poll_all(engine, both, samples, 1)
        polling_s += time.perf_counter() - poll_started
    day_s = time.perf_counter() - started - polling_s
    polls["during the day"] = summary(samples)
    sizes["end of day"] = index_kb(engine)

    samples = collections.defaultdict(list)
    plans["end of day"] = poll_all(engine, both, samples, args.repeats)
    polls["end of day"] = summary(samples)

    autocommit(engine, "VACUUM task_instance")
    sizes["after VACUUM"] = index_kb(engine)
    samples = collections.defaultdict(list)
    poll_all(engine, both, samples, args.repeats)
    polls["after VACUUM"] = summary(samples)

    autocommit(engine, f"REINDEX INDEX CONCURRENTLY {INDEX_NAME}")
    sizes["after REINDEX"] = index_kb(engine)
    samples = collections.defaultdict(list)
    poll_all(engine, ("sluice",), samples, args.repeats)
    polls["after REINDEX"] = summary(samples)
    engine.dispose()
    return {
        "rows": rows,
        "fill_seconds": round(fill_s, 1),
        "day": {**day.counts, "ticks": args.ticks, "seconds_without_polls": round(day_s, 1)},
        "index_kb": sizes,
        "polls_ms": polls,
        "plans": plans,
    }


def report(figures: dict[str, object]) -> None:
    day, sizes, polls = figures["day"], figures["index_kb"], figures["polls_ms"]
    print(
        f"\n{figures['rows']:,} task_instance rows ({ACTIVE:,} active); a day in {day['ticks']} ticks: "
        f"{day['inserts']:,} new task instances, {day['state moves']:,} state moves, {day['heartbeats']:,} "
        f"heartbeats ({day['seconds_without_polls']} s); {day.get('analyzes', 0)} ANALYZE, no VACUUM"
    )
    print(f"index {INDEX_NAME}: " + ", ".join(f"{kb:,} kB {phase}" for phase, kb in sizes.items()))
    print(f"{'p50 / p95 ms':18}" + "".join(f"{phase:>18}" for phase in PHASES))
    for key in polls["fresh"]:
        cells = [polls[phase].get(key) for phase in PHASES]
        print(f"{key:18}" + "".join(f"{c['p50']:>9.2f}{c['p95']:>9.2f}" if c else f"{'-':>18}" for c in cells))
    for phase, plans in figures["plans"].items():
        for key, scan in plans.items():
            print(f"  plan {phase:12} {key:18} {scan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[500_000], help="task_instance rows (5000000: the docs' 5 M table)"
    )
    parser.add_argument("--day-inserts", type=int, default=100_000, help="new task instances in the day")
    parser.add_argument("--heartbeats", type=int, default=500_000, help="heartbeat updates of running tasks")
    parser.add_argument("--ticks", type=int, default=200, help="steps of the day; each polls every pool once")
    parser.add_argument(
        "--model-rows", type=int, default=5_000_000, help="autovacuum/analyze thresholds of a table this size"
    )
    parser.add_argument("--dsn", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--repeats", type=int, default=50, help="polls per pool and query in each other phase")
    parser.add_argument("--json", type=Path, default=Path("bench/results/scaling_query.json"))
    args = parser.parse_args()

    admin = sa.create_engine(f"{args.dsn}/postgres", isolation_level="AUTOCOMMIT")
    results = []
    for rows in args.rows:
        name = f"sluice_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = f"{args.dsn}/{name}"
        try:
            migrate(url)
            results.append(bench(url, rows, args))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        report(results[-1])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
