"""Example ML training pipeline: two sources → join → validate → featurize → train → evaluate → publish.

Every box is a step in the `ml-steps` image run by MLStepOperator; where it runs (a local process or a
pod) is the platform's choice. Data never travels through XCom, only artifact URIs do.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param
from sluice.operators import MLStepOperator
from sluice.platform import sluice_home

DEMO_DATA = Path(os.environ.get("SLUICE_DEMO_DATA") or sluice_home() / "demo-data")
STEP = ["sluice-step"]
FEATURES_B = [
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
    "worst concave points",
    "worst symmetry",
    "worst fractal dimension",
]

with DAG(
    dag_id="ml_training_pipeline",
    description="Train, gate and publish a classifier from two joined sources",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "csv_source": Param(
            str(DEMO_DATA / "measurements.csv"),
            type="string",
            description="fsspec URI of the measurements CSV/Parquet file",
        ),
        "sql_url": Param(
            f"sqlite:///{DEMO_DATA / 'measurements.db'}",
            type="string",
            description="SQLAlchemy URL of the database holding the second source",
        ),
        "algorithm": Param("logistic_regression", type="string"),
        "min_roc_auc": Param(
            0.95,
            type="number",
            minimum=0,
            maximum=1,
            description="quality gate: evaluate fails below this ROC AUC",
        ),
    },
    tags=["sluice", "example", "training"],
) as dag:
    # Sources are external and may change between runs: never served from the step cache.
    ingest_csv = MLStepOperator(
        task_id="ingest_csv",
        image="ml-steps",
        command=[*STEP, "ingest"],
        step_params={"source": "{{ params.csv_source }}"},
        outputs={"data": "data.parquet"},
        cache=False,
        retries=3,
        retry_delay=timedelta(seconds=10),
        retry_exponential_backoff=True,
    )
    ingest_sql = MLStepOperator(
        task_id="ingest_sql",
        image="ml-steps",
        command=[*STEP, "ingest"],
        step_params={"source": "{{ params.sql_url }}", "query": "SELECT * FROM measurements"},
        outputs={"data": "data.parquet"},
        cache=False,
        retries=3,
        retry_delay=timedelta(seconds=10),
        retry_exponential_backoff=True,
    )
    join = MLStepOperator(
        task_id="join",
        image="ml-steps",
        command=[*STEP, "join"],
        inputs={"left": ingest_csv.output["data"], "right": ingest_sql.output["data"]},
        step_params={"on": "id", "how": "inner"},
        outputs={"data": "data.parquet"},
    )
    validate = MLStepOperator(
        task_id="validate",
        image="ml-steps",
        command=[*STEP, "validate"],
        inputs={"data": join.output["data"]},
        step_params={
            "schema": {"id": "int", "target": "int", "mean radius": "float", "worst area": "float"},
            "not_null": ["id", "target", *FEATURES_B],
            "ranges": {"target": [0, 1], "mean radius": [0, 100], "worst area": [0, 10000]},
            "min_rows": 100,
        },
        outputs={"report": "report.json"},
    )
    featurize = MLStepOperator(
        task_id="featurize",
        image="ml-steps",
        command=[*STEP, "featurize"],
        inputs={"data": join.output["data"]},
        step_params={"target": "target", "drop": ["id"], "test_size": 0.25, "random_state": 7},
        outputs={"train": "train.parquet", "test": "test.parquet", "transformer": "transformer.joblib"},
    )
    train = MLStepOperator(
        task_id="train",
        image="ml-steps",
        command=[*STEP, "train"],
        inputs={"train": featurize.output["train"]},
        step_params={"target": "target", "algorithm": "{{ params.algorithm }}", "random_state": 7},
        outputs={"model": "model.joblib"},
        # Training is the memory-hungry step: its Celery task goes to the highmem pool, and the step
        # itself gets the highmem profile (a bigger pod on a cluster, a higher memory cap on a laptop).
        queue="highmem",
        profile="highmem",
    )
    # A failed quality gate is deterministic: retrying it only delays the red run.
    evaluate = MLStepOperator(
        task_id="evaluate",
        image="ml-steps",
        command=[*STEP, "evaluate"],
        inputs={"model": train.output["model"], "test": featurize.output["test"]},
        step_params={"target": "target", "metric": "roc_auc", "threshold": "{{ params.min_roc_auc }}"},
        outputs={"metrics": "metrics.json"},
        retries=0,
    )
    publish = MLStepOperator(
        task_id="publish",
        image="ml-steps",
        command=[*STEP, "publish"],
        inputs={"model": train.output["model"], "metrics": evaluate.output["metrics"]},
        step_params={"model_name": "breast-cancer-classifier"},
        outputs={"model": "model.joblib", "model_card": "MODEL_CARD.md"},
    )

    validate >> featurize
