"""`sluice demo` on the embedded default does not print Airflow's "No tasks to run" line once a second while a
task waits for its retry (61 of them in one run of issue 26); the filter lives only for the demo's run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sluice import runs
from sluice.cli import app
from typer.testing import CliRunner

DAG_TEST_LOGGER = "airflow.sdk.definitions.dag"  # where dag.test() logs its waiting


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_embedded_demo_drops_airflows_waiting_line_and_only_while_it_runs(
    airflow_db: Path, demo_data: Path, dags_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger(DAG_TEST_LOGGER)
    kept = Kept()
    logger.addHandler(kept)

    def run_loaded(dag: Any, conf: dict[str, object] | None = None) -> runs.RunOutcome:
        logger.warning("No tasks to run. unrunnable tasks: %s", {"<TaskInstance: champion up_for_retry>"})
        logger.warning("Marking run failed")
        return runs.RunOutcome(dag.dag_id, "manual__probe", "success")

    monkeypatch.setattr(runs, "run_loaded", run_loaded)
    try:
        result = CliRunner().invoke(app, ["demo", "ml_training_pipeline", "--dags-folder", str(dags_folder)])
        assert result.exit_code == 0, result.output
        assert kept.messages == ["Marking run failed"]
        logger.warning("No tasks to run. unrunnable tasks: %s", set())
        assert kept.messages[-1] == "No tasks to run. unrunnable tasks: set()", "the filter ends with the demo"
    finally:
        logger.removeHandler(kept)
