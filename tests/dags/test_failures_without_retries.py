"""Failures no retry can change fail once, with a message saying what to do (issue 26): a retry only delays the red
run (30 s per retry in the examples) and paints a second red try. Real runs through ``dag.test`` on SQLite."""

from __future__ import annotations

import itertools
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG, TriggerRule, task
from sluice.operators import MLStepOperator
from sluice.runs import run_dag

from tests.support.runs import run_dag_object

REPO = Path(__file__).resolve().parents[2]
OK = [sys.executable, str(REPO / "tests" / "operators" / "steps" / "contract_step.py"), "ok"]
FAIL = [sys.executable, "-c", "raise SystemExit('sluice-step: error: the step failed on purpose')"]
RETRIED = {"retries": 1, "retry_delay": timedelta(seconds=1)}  # what a retry would cost here, kept short
_ids = itertools.count()


@pytest.fixture(autouse=True)
def _db(airflow_db: Path) -> None:
    """Every test here runs real DAG runs against the session's SQLite DB."""


def task_log(capfd: pytest.CaptureFixture[str]) -> str:
    """The embedded run's task logs reach this process's stdout/stderr (through the LocalExecutor's supervisors,
    which print an exception's text as a repr: quotes escaped)."""
    out, err = capfd.readouterr()
    return " ".join((out + err).replace("\\'", "'").split())


def test_sharded_training_without_shards_fails_once_naming_the_command_that_makes_a_set(
    tmp_path: Path, dags_folder: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A fresh stack's run from the UI or REST: no shard set yet (only `sluice demo --stack` makes one)."""
    empty = tmp_path / "no-shards"
    empty.mkdir()
    outcome = run_dag("sharded_training", dags_folder, {"source": str(empty)})
    listed = outcome.task("list_shards")
    assert (listed.state, listed.try_number) == ("failed", 1)
    log = task_log(capfd)
    assert f"no Parquet shards (*.parquet) under {empty}" in log
    assert f"python -m sluice_steps.synth {empty} --rows 200000" in log
    assert "'source' param" in log
    assert outcome.state == "failed"


def champion_dag(featurize_command: list[str], train_command: list[str]) -> DAG:
    """ml_training_pipeline's shape: featurize → plan → mapped train → champion (all_done) gathering every
    candidate's evaluation plus featurize's test set."""
    with DAG(f"fan_in_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        featurize = MLStepOperator(
            task_id="featurize",
            image="ml-steps",
            command=featurize_command,
            outputs={"train": "train.txt", "test": "test.txt"},
            retries=0,
        )

        @task(retries=0)
        def plan() -> list[dict[str, object]]:
            return [{"step_params": {"value": "a"}}, {"step_params": {"value": "b"}}]

        plans = plan()
        featurize >> plans
        train = MLStepOperator.partial(
            task_id="train",
            image="ml-steps",
            command=train_command,
            inputs={"train": featurize.output["train"]},
            outputs={"evaluation": "evaluation.txt"},
            retries=0,
        ).expand_kwargs(plans)
        MLStepOperator(
            task_id="champion",
            image="ml-steps",
            command=OK,
            inputs={"candidates": [train.output["evaluation"]], "test": featurize.output["test"]},
            outputs={"model": "model.txt"},
            trigger_rule=TriggerRule.ALL_DONE,
            **RETRIED,
        )
    return dag


def test_a_fan_in_whose_every_mapped_upstream_failed_fails_once_naming_the_input(
    capfd: pytest.CaptureFixture[str],
) -> None:
    outcome = run_dag_object(champion_dag(OK, FAIL))
    assert [t.state for t in outcome.mapped("train")] == ["failed", "failed"]
    champion = outcome.task("champion")
    assert (champion.state, champion.try_number) == ("failed", 1)
    log = task_log(capfd)
    assert "input 'candidates'" in log and "its upstream produced nothing" in log, log[-3000:]


def test_a_step_after_a_failed_upstream_fails_once_naming_the_input_it_lacks(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """featurize fails: train never expands (upstream_failed) and champion, all_done, runs with nothing."""
    outcome = run_dag_object(champion_dag(FAIL, OK))
    assert outcome.task("featurize").state == "failed"
    assert outcome.task("train").state == "upstream_failed"
    champion = outcome.task("champion")
    assert (champion.state, champion.try_number) == ("failed", 1)
    log = task_log(capfd)
    assert "input 'test'" in log and "featurize produced nothing" in log, log[-3000:]
