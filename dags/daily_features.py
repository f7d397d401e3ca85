"""Daily features: one partition per day, independent runs, so a backfill fills any date range.

Each run reads its own day's rows (keyed by the logical date) and replaces `tables/features/ds=<date>/`
under the artifact root: runs share no state and do not depend on the previous day, so
`airflow backfill create --dag-id daily_features --from-date 2026-01-01 --to-date 2026-01-31` writes
every partition once, in any order, several at a time, and re-running a day replaces its partition.

Catchup policy: `catchup=False`. Deploying the DAG schedules only the latest day; history is filled on
purpose with a backfill (which Airflow 3 runs through the scheduler, `max_active_runs` at a time).
A day is all-or-nothing (no partial partition): its steps keep the default `all_success` trigger rule, and
a failed day fails only that day's run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param
from sluice.operators import MLStepOperator

STEP = ["sluice-step"]

with DAG(
    dag_id="daily_features",
    description="Derived features per day into a date-partitioned table; backfill-friendly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=3,
    render_template_as_native_obj=True,
    default_args={
        "owner": "ml-platform",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "depends_on_past": False,
    },
    params={
        "rows": Param(200, type="integer", minimum=1, maximum=10000, description="rows drawn for each day"),
        "table": Param("features", type="string", description="table name under tables/ in the artifact root"),
    },
    tags=["sluice", "example", "features", "backfill"],
) as dag:
    extract = MLStepOperator(
        task_id="extract",
        image="ml-steps",
        command=[*STEP, "batch"],
        step_params={
            "interval_start": "{{ logical_date.isoformat() }}",
            "interval_minutes": 1440,
            "rows": "{{ params.rows }}",
            "with_target": True,
        },
        outputs={"batch": "batch.parquet"},
    )
    # Writes the day's partition outside the task's prefix: an impure step, never served from the step cache.
    features = MLStepOperator(
        task_id="features",
        image="ml-steps",
        command=[*STEP, "features"],
        inputs={"batch": extract.output["batch"]},
        step_params={"ds": "{{ logical_date.isoformat() }}", "table": "{{ params.table }}"},
        outputs={"report": "report.json"},
    )
