"""Batch scoring every 15 minutes, and again as soon as a new model is registered.

Schedule: the model's asset (updated by `ml_training_pipeline`'s `publish` step) OR a 15-minute cron
(`AssetOrTimeSchedule`). Each run scores one 15-minute interval: a timer run the interval that just ended
([run time - 15 min, run time)), a model-triggered run the last complete interval (re-scored with the new
model). Scores land in `tables/scores/<model>/interval=<start>/shard-<k>-of-<n>.parquet` under the
artifact root; each file is replaced whole, so re-running an interval replaces its partition and never
duplicates rows.

Scoring is split into shards (a mapped step): one failed shard fails only its own instance and leaves the
other shards' files in place; the run then shows failed (every shard is a leaf), and re-running the
interval (or clearing just the failed shard) completes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param
from sluice.demo import Example
from sluice.operators import MLStepOperator
from sluice.registry import model_asset

# The registry entry ml_training_pipeline publishes: a run scores with its current version.
MODEL = "breast-cancer-classifier"
# What `sluice demo` checks before running this DAG (sluice.demo): the model (or the one a run's conf names in
# model_name) has a current version, else it says to run ml_training_pipeline first.
EXAMPLE = Example(requires_model=MODEL, registered_by="ml_training_pipeline", model_param="model_name")
STEP = ["sluice-step"]
SHARDS = 2
# The interval this run scores: the 15 minutes before the run's data interval end (cron runs) or before
# the moment a model event triggered it, floored to the 15-minute grid by the steps.
INTERVAL_START = "{{ ((dag_run.data_interval_end or dag_run.run_after) - macros.timedelta(minutes=15)).isoformat() }}"

with DAG(
    dag_id="batch_scoring",
    description="Score each 15-minute batch with the registry's current model; re-score when a model lands",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC", interval=timedelta(minutes=15)),
        assets=model_asset(MODEL),
    ),
    start_date=datetime(2026, 1, 1),
    # Scoring old intervals is a deliberate act (airflow backfill create), not a side effect of a deploy.
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "model_name": Param(MODEL, type="string", description="registry name: models/<name>/current"),
        "rows": Param(40, type="integer", minimum=1, maximum=10000, description="rows in each batch"),
    },
    tags=["sluice", "example", "scoring"],
) as dag:
    batch = MLStepOperator(
        task_id="batch",
        image="ml-steps",
        command=[*STEP, "batch"],
        step_params={"interval_start": INTERVAL_START, "interval_minutes": 15, "rows": "{{ params.rows }}"},
        outputs={"batch": "batch.parquet"},
    )
    # Scoring reads the registry's current model and replaces a partition outside the task's prefix: its step
    # is declared impure (sluice-step --describe), so it is never served from the step cache.
    score = MLStepOperator.partial(
        task_id="score",
        image="ml-steps",
        command=[*STEP, "score"],
        inputs={"batch": batch.output["batch"]},
        outputs={"report": "report.json"},
    ).expand(
        step_params=[
            {
                "model_name": "{{ params.model_name }}",
                "interval_start": INTERVAL_START,
                "interval_minutes": 15,
                "shard": shard,
                "shards": SHARDS,
            }
            for shard in range(SHARDS)
        ]
    )
