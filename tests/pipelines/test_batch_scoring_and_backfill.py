"""batch_scoring and daily_features through real Airflow runs on SQLite, steps as local processes.

Runs are created by Airflow's own code (the scheduler's run creation for the timer and for asset events,
``_create_backfill`` behind ``airflow backfill create``) and executed in-process (``tests.support.runs.run_existing``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sluice.runs import RunOutcome, run_dag

from tests.support.registry import example_model, table_uri
from tests.support.runs import backfill, create_due_runs, run_existing

pytestmark = pytest.mark.slow  # whole pipeline runs through Airflow (10-40 s each)


def partition(interval: str) -> Path:
    return Path(table_uri("scores", example_model(), f"interval={interval}"))


def read_partition(folder: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))]
    return pd.concat(frames).sort_values("id").reset_index(drop=True)


@pytest.fixture(scope="module")
def due_runs(trained: RunOutcome) -> list[tuple[str, str, str]]:
    """Two passes of the scheduler's run creation after the training run registered a model."""
    assert trained.task("publish").state == "success"
    return create_due_runs(["batch_scoring"]) + create_due_runs(["batch_scoring"])


def test_a_registered_model_triggers_scoring_through_its_asset(due_runs, dags_folder: Path, trained) -> None:
    triggered = [run_id for _, run_id, kind in due_runs if kind == "asset_triggered"]
    assert len(triggered) == 1, due_runs
    outcome = run_existing("batch_scoring", dags_folder, triggered[0])
    assert outcome.succeeded, [(t.task_id, t.map_index, t.state) for t in outcome.tasks]
    version = trained.task("publish").metrics["version"]
    assert {t.metrics["model_version"] for t in outcome.mapped("score")} == {version}


def test_the_15_minute_timer_schedules_scoring_of_the_interval_that_ended(due_runs, dags_folder: Path) -> None:
    scheduled = [run_id for _, run_id, kind in due_runs if kind == "scheduled"]
    assert len(scheduled) == 1, due_runs
    outcome = run_existing("batch_scoring", dags_folder, scheduled[0])
    assert outcome.succeeded
    run_time = datetime.fromisoformat(scheduled[0].removeprefix("scheduled__"))
    assert run_time.minute % 15 == 0 and run_time.second == 0
    start = run_time.replace(minute=run_time.minute) - pd.Timedelta(minutes=15)
    folder = partition(f"{start:%Y-%m-%dT%H%M}")
    assert {p.name for p in folder.glob("*.parquet")} == {"shard-0-of-2.parquet", "shard-1-of-2.parquet"}
    assert len(read_partition(folder)) == 40


def test_rerunning_an_interval_replaces_its_partition_with_the_same_rows(trained, dags_folder: Path) -> None:
    when = datetime(2026, 3, 1, 10, 7, tzinfo=UTC)  # scores [09:45, 10:00)
    first = run_dag("batch_scoring", dags_folder, logical_date=when)
    assert first.succeeded and first.mapped_count == 2
    folder = partition("2026-03-01T0945")
    before = read_partition(folder)
    second = run_dag("batch_scoring", dags_folder, logical_date=when)
    assert second.succeeded
    after = read_partition(folder)
    assert len(after) == len(before) == 40 and after["id"].is_unique
    pd.testing.assert_frame_equal(after, before)
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_backfill_over_three_days_writes_three_partitions_once(airflow_db, demo_data, dags_folder: Path) -> None:
    outcomes = backfill(
        "daily_features", dags_folder, datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 3, tzinfo=UTC)
    )
    assert [o.run_id for o in outcomes] == [f"backfill__2026-02-0{d}T00:00:00+00:00" for d in (1, 2, 3)]
    assert all(o.succeeded for o in outcomes)
    table = Path(table_uri("features"))
    days = ["ds=2026-02-01", "ds=2026-02-02", "ds=2026-02-03"]
    assert sorted(p.name for p in table.iterdir()) == days
    frames = {day: pd.read_parquet(table / day / "features.parquet") for day in days}
    assert all(len(frame) == 200 and frame["id"].is_unique for frame in frames.values())
    assert {frame["ds"].iloc[0] for frame in frames.values()} == {d.removeprefix("ds=") for d in days}
    assert not frames[days[0]]["id"].isin(frames[days[1]]["id"]).any(), "each day has its own rows"
