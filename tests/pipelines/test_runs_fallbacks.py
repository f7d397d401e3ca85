"""The harness's runs (tests/support/runs.py) on an Airflow without the private functions they use in-process
(tests/support/airflow_private.py): a backfill is created through Airflow's own CLI instead, with one warning
saying why."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import runs


def test_without_create_backfill_the_backfill_is_created_by_airflows_cli(
    airflow_db: Path, dags_folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.models import backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    runs.set_paused(["daily_features"], True, dags_folder)  # parses the folder into the DB, as the CLI needs
    monkeypatch.delattr(backfill, "_create_backfill")
    with caplog.at_level(logging.WARNING, logger=runs.__name__):
        created = runs.create_backfill(
            "daily_features", datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC), {"note": "cli"}
        )
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "airflow backfill create" in warnings[0] and "_create_backfill" in warnings[0]
        with create_session() as session:
            made = session.execute(
                select(DagRun.run_id, DagRun.run_type, DagRun.conf).where(DagRun.backfill_id == created)
            ).all()
        assert sorted(run_id for run_id, _, _ in made) == [
            "backfill__2026-01-10T00:00:00+00:00",
            "backfill__2026-01-11T00:00:00+00:00",
        ]
        assert {(str(kind), tuple(conf.items())) for _, kind, conf in made} == {("backfill", (("note", "cli"),))}
    finally:
        with create_session() as session:  # done, so a later backfill of the DAG is not refused as concurrent
            session.get(backfill.Backfill, created).completed_at = datetime.now(UTC)
