"""MLStepOperator with the local launcher, through real Airflow runs (``dag.test`` on SQLite).

The steps are tiny contract-v1 scripts (steps/contract_step.py) so each test isolates one behaviour of
the operator and launcher rather than of the ML steps.
"""

from __future__ import annotations

import itertools
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG
from sluice.operators import MLStepOperator

from tests.support.runs import run_dag_object

STEP = [sys.executable, str(Path(__file__).parent / "steps" / "contract_step.py")]
_ids = itertools.count()


def new_dag(name: str) -> DAG:
    return DAG(f"op_{name}_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)


def step(task_id: str, mode: str = "ok", **kwargs: object) -> MLStepOperator:
    kwargs.setdefault("outputs", {"out": "out.txt"})
    return MLStepOperator(task_id=task_id, image="ml-steps", command=[*STEP, mode], **kwargs)


def task_log(capfd: pytest.CaptureFixture[str]) -> str:
    """``dag.test()`` runs tasks in this process and writes their log to stdout/stderr."""
    out, err = capfd.readouterr()
    return out + err


@pytest.fixture(autouse=True)
def _db(airflow_db: Path) -> None:
    """Every test here runs real DAG runs against the session's SQLite DB."""


def test_outputs_flow_downstream_as_uris_through_xcom() -> None:
    with new_dag("flow") as dag:
        first = step("first", step_params={"value": "v1"})
        step("second", inputs={"upstream": first.output["out"]})
    outcome = run_dag_object(dag)
    assert outcome.succeeded
    first_uri = outcome.task("first").outputs["out"]
    second_uri = outcome.task("second").outputs["out"]
    assert f"/{outcome.dag_id}/{outcome.run_id}/first/out.txt" in first_uri
    assert Path(second_uri).read_text() == "out::out:v1:"


def test_step_metrics_are_returned_in_the_result_xcom() -> None:
    with new_dag("metrics") as dag:
        first = step("first", step_params={"value": "abc"})
        step("second", inputs={"x": first.output["out"]})
    outcome = run_dag_object(dag)
    assert outcome.task("second").metrics == {"length": len("out:abc:")}


def test_failed_step_fails_the_task_and_leaves_children_upstream_failed() -> None:
    with new_dag("fail") as dag:
        bad = step("bad", "fail", retries=0)
        step("child", inputs={"x": bad.output["out"]})
    outcome = run_dag_object(dag)
    assert outcome.task("bad").state == "failed"
    assert outcome.task("child").state == "upstream_failed"
    assert outcome.state == "failed"


def test_step_error_message_reaches_the_task_log(capfd: pytest.CaptureFixture[str]) -> None:
    with new_dag("errlog") as dag:
        step("bad", "fail", retries=0)
    assert run_dag_object(dag).task("bad").state == "failed"
    log = task_log(capfd)
    assert "column 'target' is missing" in log
    assert "failed with exit code 3" in log


def test_step_stdout_and_stderr_are_streamed_into_the_task_log(capfd: pytest.CaptureFixture[str]) -> None:
    with new_dag("stream") as dag:
        step("talker", step_params={"value": "x"})
    assert run_dag_object(dag).succeeded
    log = task_log(capfd)
    assert "[step] step starting in mode ok" in log
    assert "[step] a line on stderr" in log
    assert "[step] step done" in log


def test_exit_zero_without_result_json_is_a_contract_violation_not_retried(capfd: pytest.CaptureFixture[str]) -> None:
    with new_dag("noresult") as dag:
        step("silent", "noresult", retries=2, retry_delay=timedelta(0))
    outcome = run_dag_object(dag)
    assert (outcome.task("silent").state, outcome.task("silent").try_number) == ("failed", 1), (
        "a broken contract fails the same way on every try: retries are not spent on it"
    )
    log = task_log(capfd)
    assert "step failed (contract_violation, not retried): step broke its contract: it exited 0 but wrote no " in log
    assert "PermanentStepRunError" in log


def test_result_with_another_contract_version_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    with new_dag("version") as dag:
        step("future", step_params={"contract_version": 2}, retries=0)
    outcome = run_dag_object(dag)
    assert outcome.task("future").state == "failed"
    assert "contract_version 2" in task_log(capfd)


def test_step_killed_mid_write_leaves_no_output(sluice_home: Path) -> None:
    with new_dag("crash") as dag:
        step("crash", "crash-mid-write", retries=0)
    outcome = run_dag_object(dag)
    assert outcome.task("crash").state == "failed"
    prefix = sluice_home / "artifacts" / outcome.dag_id / outcome.run_id / "crash"
    assert not (prefix / "out.txt").exists()
    assert not (prefix / "_result.json").exists()
    assert not [p.name for p in prefix.rglob("*.tmp-*")], "the launcher must sweep a killed step's temp files"


def test_memory_limit_of_the_profile_stops_the_step(with_profiles, capfd: pytest.CaptureFixture[str]) -> None:
    with_profiles({"tiny": {"cpu": "1", "memory": "200Mi"}})
    with new_dag("oom") as dag:
        step("hog", "hog", profile="tiny", step_params={"bytes": 400 * 2**20}, retries=0)
    outcome = run_dag_object(dag)
    assert outcome.task("hog").state == "failed"
    assert "exceeded memory limit of profile 'tiny' (200Mi)" in task_log(capfd)


def test_timeout_of_the_profile_stops_the_step(with_profiles, capfd: pytest.CaptureFixture[str]) -> None:
    with_profiles({"quick": {"timeoutSeconds": 1}})
    with new_dag("timeout") as dag:
        step("sleeper", "sleep", profile="quick", step_params={"seconds": 60}, retries=0)
    outcome = run_dag_object(dag)
    assert outcome.task("sleeper").state == "failed"
    assert "exceeded the timeout of profile 'quick' (1s)" in task_log(capfd)


def test_profile_cpu_count_pins_the_step_and_sizes_its_thread_pools(with_profiles) -> None:
    with_profiles({"one": {"cpu": "500m", "memory": "1Gi"}})
    with new_dag("cpus") as dag:
        step("counter", "cpus", profile="one", cache=False)
    metrics = run_dag_object(dag).task("counter").metrics
    assert metrics == {"omp": "1", "omp_wait": "PASSIVE", "affinity": 1}


def test_unknown_profile_fails_when_the_dag_is_defined() -> None:
    with new_dag("badprofile"), pytest.raises(ValueError, match=r"task 'x': unknown profile 'huge'.*default"):
        step("x", profile="huge")


def test_output_file_name_with_a_slash_is_refused() -> None:
    with new_dag("badoutput"), pytest.raises(ValueError, match=r"output 'out' has file name 'a/b\.txt'"):
        step("x", outputs={"out": "a/b.txt"})


def test_second_run_with_unchanged_inputs_is_a_cache_hit() -> None:
    def build() -> DAG:
        with new_dag("cache") as dag:
            step("cached", step_params={"value": "same"})
        return dag

    first = build()
    first_outcome = run_dag_object(first)
    second = DAG(first.dag_id, schedule=None, start_date=datetime(2026, 1, 1))
    with second:
        step("cached", step_params={"value": "same"})
    second_outcome = run_dag_object(second)
    assert first_outcome.task("cached").cache_hit is False
    assert second_outcome.task("cached").cache_hit is True
    assert Path(second_outcome.task("cached").outputs["out"]).read_text() == "out:same:"


def test_changed_params_miss_the_cache() -> None:
    with new_dag("cache_params") as dag:
        step("a", step_params={"value": "one"})
    run_dag_object(dag)
    with DAG(dag.dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as again:
        step("a", step_params={"value": "two"})
    outcome = run_dag_object(again)
    assert outcome.task("a").cache_hit is False
    assert Path(outcome.task("a").outputs["out"]).read_text() == "out:two:"


def test_changed_input_bytes_miss_the_cache_downstream() -> None:
    def build(dag_id: str, upstream_value: str) -> DAG:
        with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
            first = step("first", step_params={"value": upstream_value})
            step("second", inputs={"x": first.output["out"]}, step_params={"value": "fixed"})
        return dag

    dag_id = f"op_cache_inputs_{next(_ids)}"
    run_dag_object(build(dag_id, "a"))
    outcome = run_dag_object(build(dag_id, "b"))
    assert outcome.task("second").cache_hit is False
    assert Path(outcome.task("second").outputs["out"]).read_text() == "out:fixed:out:b:"
    again = run_dag_object(build(dag_id, "b"))
    assert again.task("second").cache_hit is True


def test_opted_out_step_never_hits_the_cache() -> None:
    with new_dag("nocache") as dag:
        step("a", cache=False)
    first = run_dag_object(dag).task("a")
    with DAG(dag.dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as again:
        step("a", cache=False)
    second = run_dag_object(again).task("a")
    assert (first.state, second.state) == ("success", "success")
    assert (first.cache_state, second.cache_state) == ("off", "off"), "neither looked the step up nor stored it"
    assert second.result is not None and second.result["cache"]["off"] == "the step sets cache=False"
