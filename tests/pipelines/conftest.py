"""One training run of the example pipeline per session, shared by the pipeline tests.

Small data, small grid (5 candidates, one of them broken on purpose): the tests check mapping, the champion,
the registry and failure isolation on it. The default grid (12 candidates) runs in the CLI demo test.
batch_scoring is unpaused before the run, so the model the run registers queues an asset-triggered run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice.runs import RunOutcome, run_dag

from tests.support.runs import set_paused

SMALL_GRID = [
    {"algorithm": "logistic_regression", "hyperparams": {"C": 1.0}},
    {"algorithm": "knn", "hyperparams": {"n_neighbors": 7}},
    {"algorithm": "knn", "hyperparams": {"n_neighbors": -1}},  # fails to fit: only its own branch fails
    {"algorithm": "svc", "hyperparams": {"C": 1.0}},
    {"algorithm": "random_forest", "hyperparams": {"n_estimators": 25, "max_depth": 4}, "profile": "highmem"},
]
BROKEN_CANDIDATE = "02-knn"


@pytest.fixture(scope="session")
def trained(airflow_db: Path, demo_data: Path, dags_folder: Path) -> RunOutcome:
    set_paused(["batch_scoring"], False, dags_folder)
    try:
        return run_dag("ml_training_pipeline", dags_folder, {"grid": SMALL_GRID})
    finally:
        set_paused(["batch_scoring"], True, dags_folder)
