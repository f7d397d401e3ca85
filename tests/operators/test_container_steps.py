"""MLStepOperator with the container launcher, through real Airflow runs (``dag.test`` on SQLite) and real
containers of the step image: how each failure kind reaches the task, and the step cache on image content."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG
from sluice.operators import MLStepOperator
from sluice.platform import current_platform

from tests.support.containers import INLINE_STEP, require_image
from tests.support.runs import run_dag_object

pytestmark = pytest.mark.slow
_ids = itertools.count()


@pytest.fixture(autouse=True)
def _containers(airflow_db: Path, sluice_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here runs its steps in containers, with a 'small' profile and a larger one to suggest."""
    require_image(current_platform().image_ref("ml-steps"))
    platform_file = tmp_path / "platform.yaml"
    platform_file.write_text(
        json.dumps(
            {
                "pools": [{"name": "default", "queues": ["default"]}],
                "profiles": {
                    "default": {"cpu": "1", "memory": "1Gi"},
                    "small": {"cpu": "1", "memory": "64Mi"},
                    "medium": {"cpu": "1", "memory": "512Mi"},
                },
                "artifacts": {"root": str(sluice_home / "artifacts")},
                "stepImages": current_platform().model_dump(by_alias=True)["stepImages"],
            }
        )
    )
    monkeypatch.setenv("SLUICE_PLATFORM_FILE", str(platform_file))
    monkeypatch.setenv("SLUICE_LAUNCHER", "container")


def new_dag(name: str) -> DAG:
    return DAG(f"ctr_{name}_{next(_ids)}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)


def inline(task_id: str, mode: str = "ok", **kwargs: object) -> MLStepOperator:
    kwargs.setdefault("outputs", {"seen": "seen.json"})
    return MLStepOperator(task_id=task_id, image="ml-steps", command=["python3", "-c", INLINE_STEP, mode], **kwargs)


def task_log(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return out + err


def test_out_of_memory_names_the_profile_its_limit_and_the_next_larger(capfd: pytest.CaptureFixture[str]) -> None:
    with new_dag("oom") as dag:
        inline("hog", "hog", profile="small", step_params={"bytes": 256 * 2**20}, retries=0)
    outcome = run_dag_object(dag)
    assert outcome.task("hog").state == "failed"
    log = task_log(capfd)
    assert "exceeded memory limit of profile 'small' (64Mi)" in log
    assert "use profile 'medium' (512Mi)" in log
    assert "step failed (out_of_memory)" in log


def test_an_unknown_step_fails_without_retries(capfd: pytest.CaptureFixture[str]) -> None:
    with new_dag("unknown") as dag:
        # Through `python -m`, which the platform does not check against the shipped specs (as `sluice-step teleport`
        # would be, failing the import): the image itself refuses the step it lacks.
        MLStepOperator(
            task_id="teleport", image="ml-steps", command=["python3", "-m", "sluice_steps", "teleport"], retries=2
        )
    outcome = run_dag_object(dag)
    task = outcome.task("teleport")
    assert task.state == "failed" and task.try_number == 1, "a permanent failure is not retried"
    assert "step failed (unknown_step, not retried)" in task_log(capfd)


def test_a_missing_image_fails_without_retries_naming_make_images(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with new_dag("noimage") as dag:
        MLStepOperator(
            task_id="ghost",
            image="localhost/sluice/never-built:0.0.0",
            command=["sluice-step", "ingest"],
            retries=2,
            cache=False,
        )
    outcome = run_dag_object(dag)
    assert outcome.task("ghost").state == "failed" and outcome.task("ghost").try_number == 1
    log = task_log(capfd)
    assert "image_missing" in log and "make images" in log


def test_the_step_cache_keys_on_the_image_so_a_second_run_hits() -> None:
    def build() -> DAG:
        with new_dag("cache") as dag:
            inline("probe", step_params={"value": "same"})
        return dag

    first = run_dag_object(build()).task("probe")
    second = run_dag_object(build()).task("probe")
    # Two DAG ids, one step: the key is the image content + command + params + inputs, not the DAG.
    assert first.cache_state == "miss" and second.cache_state == "hit"


def test_the_step_reports_its_peak_memory_from_its_cgroup() -> None:
    with new_dag("peak") as dag:
        inline("hog", "hog", profile="medium", step_params={"bytes": 128 * 2**20, "hold": 1})
    task = run_dag_object(dag).task("hog")
    assert task.state == "success"
    peak, limit = task.peak_memory
    assert limit == 512 * 2**20 and 128 * 2**20 <= peak < limit
