"""The example pipeline end to end through real Airflow (``dag.test`` on SQLite, steps as processes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice.runs import RunOutcome, run_dag

TASKS = {"ingest_csv", "ingest_sql", "join", "validate", "featurize", "train", "evaluate", "publish"}
CACHEABLE = TASKS - {"ingest_csv", "ingest_sql"}


@pytest.fixture(scope="module")
def first_run(airflow_db: Path, demo_data: Path, dags_folder: Path) -> RunOutcome:
    return run_dag("ml_training_pipeline", dags_folder)


def test_every_task_succeeds(first_run: RunOutcome) -> None:
    assert {t.task_id: t.state for t in first_run.tasks} == dict.fromkeys(TASKS, "success")
    assert first_run.state == "success"


def test_every_declared_artifact_exists_under_the_runs_prefix(first_run: RunOutcome, sluice_home: Path) -> None:
    for task in first_run.tasks:
        assert task.outputs, f"{task.task_id} reported no outputs"
        for uri in task.outputs.values():
            assert Path(uri).is_file(), uri
            assert f"/ml_training_pipeline/{first_run.run_id}/{task.task_id}/" in uri
            assert Path(uri).is_relative_to(sluice_home / "artifacts")


def test_the_model_clears_the_quality_gate(first_run: RunOutcome) -> None:
    metrics = first_run.task("evaluate").metrics
    assert metrics["roc_auc"] >= 0.95


def test_publish_writes_a_model_card_with_the_metrics(first_run: RunOutcome) -> None:
    card = Path(first_run.task("publish").outputs["model_card"]).read_text()
    assert "breast-cancer-classifier" in card
    assert "roc_auc" in card


def test_both_sources_are_joined(first_run: RunOutcome) -> None:
    csv_rows = first_run.task("ingest_csv").metrics["rows"]
    sql_rows = first_run.task("ingest_sql").metrics["rows"]
    assert csv_rows == sql_rows == 569


def test_rerun_with_nothing_changed_skips_every_step_but_ingest(first_run: RunOutcome, dags_folder: Path) -> None:
    second = run_dag("ml_training_pipeline", dags_folder)
    assert second.succeeded
    hits = {t.task_id for t in second.tasks if t.cache_hit}
    assert hits == CACHEABLE
    assert Path(second.task("publish").outputs["model"]).is_file()


def test_failed_quality_gate_stops_publish(first_run: RunOutcome, dags_folder: Path, sluice_home: Path) -> None:
    gated = run_dag("ml_training_pipeline", dags_folder, {"min_roc_auc": 0.99999})
    states = {t.task_id: t.state for t in gated.tasks}
    assert states["evaluate"] == "failed"
    assert states["publish"] == "upstream_failed"
    assert gated.state == "failed"
    assert not (sluice_home / "artifacts" / "ml_training_pipeline" / gated.run_id / "publish").exists()
