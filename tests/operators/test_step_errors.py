"""What a failed step raises through MLStepOperator (local launcher): a typed error carrying the launcher's
FailureKind, the original error chained, permanent kinds as Airflow's no-retry failure."""

from __future__ import annotations

import itertools
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from sluice import SluiceError
from sluice.contract import StepContractError
from sluice.launchers import FailureKind, StepFailed
from sluice.operators import MLStepOperator, PermanentStepRunError, StepRunError

from tests.support.runs import run_dag_object

STEP = [sys.executable, str(Path(__file__).parent / "steps" / "contract_step.py")]
_ids = itertools.count()


def run_step(mode: str, command: list[str] | None = None, **kwargs: Any) -> StepRunError:
    """Execute one step task directly (no scheduler, no DB) and return the error it raised."""
    with DAG(f"errors_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1)):
        task = MLStepOperator(
            task_id="step",
            image="ml-steps",
            command=command or [*STEP, mode],
            outputs={"out": "out.txt"},
            cache=False,
            **kwargs,
        )
    ti = SimpleNamespace(dag_id=task.dag_id, task_id="step", run_id=f"manual__{next(_ids)}", try_number=1, map_index=-1)
    ti.xcom_push = lambda **_: None
    with pytest.raises(StepRunError) as raised:
        task.execute({"ti": ti, "task_instance": ti, "run_id": ti.run_id})  # type: ignore[arg-type]
    return raised.value


def test_a_step_that_exits_non_zero_raises_a_retryable_error_of_kind_exit() -> None:
    error = run_step("fail")
    assert error.kind is FailureKind.EXIT
    assert isinstance(error, SluiceError) and isinstance(error, AirflowException)
    assert not isinstance(error, AirflowFailException), "Airflow retries an exit failure"
    assert "column 'target' is missing" in str(error) and "failed with exit code 3" in str(error)


def test_a_contract_violation_is_permanent_and_keeps_the_contract_error_chained() -> None:
    error = run_step("noresult")
    assert error.kind is FailureKind.CONTRACT
    assert isinstance(error, PermanentStepRunError) and isinstance(error, AirflowFailException)
    assert isinstance(error.__cause__, StepContractError)
    assert str(error) == str(error.__cause__), "the message is the contract check's own"


def test_a_step_stopped_at_its_profiles_timeout_says_timeout(with_profiles: Any) -> None:
    with_profiles({"quick": {"timeoutSeconds": 1}})
    error = run_step("sleep", profile="quick", step_params={"seconds": 60})
    assert error.kind is FailureKind.TIMEOUT and not isinstance(error, AirflowFailException)
    assert "exceeded the timeout of profile 'quick' (1s)" in str(error)


def test_a_step_that_could_not_start_keeps_the_launchers_error_chained() -> None:
    error = run_step("ok", command=["no-such-step-command-anywhere"])
    assert error.kind is FailureKind.START
    assert isinstance(error.__cause__, StepFailed) and error.__cause__.kind is FailureKind.START
    assert "'no-such-step-command-anywhere' not found" in str(error)


def test_the_error_survives_airflows_serialization_with_its_kind() -> None:
    path, args, kwargs = PermanentStepRunError("bad result", FailureKind.CONTRACT).serialize()
    module, _, name = path.rpartition(".")
    rebuilt = getattr(sys.modules[module], name)(*args, **kwargs)
    assert isinstance(rebuilt, PermanentStepRunError) and rebuilt.kind is FailureKind.CONTRACT


def test_a_permanent_failure_is_not_retried_in_a_real_run(airflow_db: Path) -> None:
    with DAG(f"errors_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        MLStepOperator(task_id="silent", image="ml-steps", command=[*STEP, "noresult"], retries=2)
    task = run_dag_object(dag).task("silent")
    assert task.state == "failed" and task.try_number == 1
