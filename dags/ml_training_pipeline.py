"""Example ML training pipeline at breadth: two sources → join → validate → featurize → a grid of candidate
models (dynamic task mapping) → champion → evaluate (quality gate) → publish to the model registry.

Every box is a step in the `ml-steps` image run by MLStepOperator; where it runs (a local process or a
pod) is the platform's choice. Data never travels through XCom, only artifact URIs do.

The grid (a DAG param, so a run can try another one) is algorithms × hyperparameters; each entry names the
profile its step gets. Airflow fixes a mapped task's queue before it expands, so entries are split by pool:
`train` (default pool, profile per entry) and `train_highmem` (highmem pool and profile). A failed candidate
fails only its own mapped instance: `champion` runs once every candidate is done, whatever its end (trigger
rule `all_done`), picks the best of those that succeeded, and fails naming the cause when none did, or when
featurize produced nothing: at once, without retries (the upstream is done; a retry finds the same nothing).
(`all_done_min_one_success` reads better but Airflow skips it when an upstream is skipped, and a pool's
mapped task with no grid entries expands to zero instances, which Airflow marks skipped.)
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, TriggerRule, task
from sluice.demo import Example, data_dir
from sluice.operators import MLStepOperator
from sluice.platform import current_platform
from sluice.registry import model_asset

# The registry entry this pipeline publishes (batch_scoring scores with it).
MODEL = "breast-cancer-classifier"
DEMO_DATA = data_dir()


def make_sources(folder: Path) -> None:
    """The two sources (a CSV file and a SQLite table) from a dataset scikit-learn ships, nothing downloaded; the
    step package's generator (`python -m sluice_steps.demo_data`) makes them, once."""
    if (folder / "measurements.csv").exists() and (folder / "measurements.db").exists():
        return
    subprocess.run([sys.executable, "-m", "sluice_steps.demo_data", str(folder)], check=True, stdout=subprocess.DEVNULL)


# What `sluice demo` does before running this DAG (sluice.demo): make the sources its params point at.
EXAMPLE = Example(prepare=make_sources)
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
# 12 candidates over 5 algorithms; the tree ensembles get the highmem pool and profile.
DEFAULT_GRID = [
    *({"algorithm": "logistic_regression", "hyperparams": {"C": c}} for c in (0.1, 1.0, 10.0)),
    *({"algorithm": "knn", "hyperparams": {"n_neighbors": k}} for k in (5, 15, 31)),
    *({"algorithm": "svc", "hyperparams": {"C": c}} for c in (0.5, 2.0)),
    {"algorithm": "random_forest", "hyperparams": {"n_estimators": 100, "max_depth": 4}, "profile": "highmem"},
    {"algorithm": "random_forest", "hyperparams": {"n_estimators": 200}, "profile": "highmem"},
    {"algorithm": "gradient_boosting", "hyperparams": {"n_estimators": 100}, "profile": "highmem"},
    {"algorithm": "gradient_boosting", "hyperparams": {"n_estimators": 50, "learning_rate": 0.2}, "profile": "highmem"},
]
# Which pool's mapped task runs an entry of a given profile (any other profile: the default pool).
POOL_OF_PROFILE = {"highmem": "highmem"}
MODEL_ASSET = model_asset(MODEL)

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
        "grid": Param(
            DEFAULT_GRID,
            type="array",
            minItems=1,
            description="candidates: [{algorithm, hyperparams, profile}], one mapped train step each",
        ),
        "metric": Param("roc_auc", type="string", description="the champion is the best candidate by this"),
        "model_name": Param(MODEL, type="string", description="registry name: models/<name>/"),
        "model_version": Param(
            "",
            type="string",
            description="version to publish; empty = the next number. An existing version is never overwritten",
        ),
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
    # Sources are external and may change between runs: ingest is an impure step, never served from the step cache.
    ingest_csv = MLStepOperator(
        task_id="ingest_csv",
        image="ml-steps",
        command=[*STEP, "ingest"],
        step_params={"source": "{{ params.csv_source }}"},
        outputs={"data": "data.parquet"},
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

    @task
    def plan_grid(pool: str, params: dict | None = None) -> list[dict]:
        """The grid param → keyword sets of one pool's mapped train steps (a candidate's index is global)."""
        profiles = current_platform().profiles
        plans: dict[str, list[dict]] = {"default": [], "highmem": []}
        for i, entry in enumerate((params or {})["grid"]):
            algorithm, profile = entry.get("algorithm"), entry.get("profile", "default")
            if not algorithm or profile not in profiles:
                raise ValueError(
                    f"grid entry {i} {entry!r}: needs an 'algorithm' and a profile among {', '.join(profiles)}"
                )
            step_params = {
                "target": "target",
                "algorithm": algorithm,
                "hyperparams": entry.get("hyperparams", {}),
                "random_state": 7,
                "candidate": f"{i:02d}-{algorithm}",
            }
            served_by = POOL_OF_PROFILE.get(profile, "default")
            kwargs = (
                {"step_params": step_params}
                if served_by == "highmem"
                else {"step_params": step_params, "profile": profile}
            )
            plans[served_by].append(kwargs)
        return plans[pool]

    plan_default = plan_grid.override(task_id="plan_grid")("default")
    plan_highmem = plan_grid.override(task_id="plan_grid_highmem")("highmem")
    # One candidate per grid entry. Training is deterministic: a failed fit fails the same way on a retry.
    candidate = {
        "image": "ml-steps",
        "command": [*STEP, "train"],
        "inputs": {"train": featurize.output["train"], "test": featurize.output["test"]},
        "outputs": {"model": "model.joblib", "evaluation": "evaluation.json"},
        "retries": 0,
    }
    train = MLStepOperator.partial(task_id="train", **candidate).expand_kwargs(plan_default)
    train_highmem = MLStepOperator.partial(
        task_id="train_highmem", queue="highmem", profile="highmem", **candidate
    ).expand_kwargs(plan_highmem)
    # Partial results are allowed here: the champion is chosen among the candidates that succeeded
    # (all_done, see the module docstring; with no successful candidate its fan-in input is empty, and it fails without
    # retries, as when featurize failed and its test set does not exist).
    champion = MLStepOperator(
        task_id="champion",
        image="ml-steps",
        command=[*STEP, "champion"],
        inputs={
            "candidates": [train.output["evaluation"], train_highmem.output["evaluation"]],
            "test": featurize.output["test"],
        },
        step_params={"target": "target", "metric": "{{ params.metric }}"},
        outputs={"model": "model.joblib", "leaderboard": "leaderboard.json", "plot": "roc.png"},
        trigger_rule=TriggerRule.ALL_DONE,
    )
    # A failed quality gate is deterministic: retrying it only delays the red run.
    evaluate = MLStepOperator(
        task_id="evaluate",
        image="ml-steps",
        command=[*STEP, "evaluate"],
        inputs={"model": champion.output["model"], "test": featurize.output["test"]},
        step_params={"target": "target", "metric": "roc_auc", "threshold": "{{ params.min_roc_auc }}"},
        outputs={"metrics": "metrics.json"},
        retries=0,
    )
    # Publishing writes outside the task's prefix (the registry): an impure step, never served from the step cache.
    publish = MLStepOperator(
        task_id="publish",
        image="ml-steps",
        command=[*STEP, "publish"],
        inputs={
            "model": champion.output["model"],
            "transformer": featurize.output["transformer"],
            "metrics": evaluate.output["metrics"],
            "leaderboard": champion.output["leaderboard"],
            "plot": champion.output["plot"],
        },
        step_params={"model_name": "{{ params.model_name }}", "version": "{{ params.model_version }}"},
        outputs={"model_card": "MODEL_CARD.md", "registration": "registration.json"},
        retry_delay=timedelta(seconds=5),  # object-store hiccups; an existing version fails again at once
        outlets=[MODEL_ASSET],
    )

    validate >> featurize >> [plan_default, plan_highmem]
