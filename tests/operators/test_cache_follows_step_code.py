"""The step cache keys on the code that runs: an edited step runs again, a reverted one is a hit again.

Issue 19's reproduction, on a copy of the step package (the repository's sources are never touched): the
copy is put first on the import path of this process and of the step processes, so ``sluice-step`` runs it.
"""

from __future__ import annotations

import itertools
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG
from sluice.operators import MLStepOperator
from sluice.runs import RunOutcome

from tests.support.runs import run_dag_object

pytestmark = pytest.mark.slow  # three DAG runs through Airflow

STEPS_PACKAGE = Path(__file__).resolve().parents[2] / "images" / "ml-steps" / "sluice_steps"
EDIT_MARK = "def run(ctx: StepContext) -> None:\n"
_ids = itertools.count()


@pytest.fixture
def step_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of ``sluice_steps`` that ``sluice-step`` imports, and a fresh cache for this test."""
    root = tmp_path / "src"
    shutil.copytree(STEPS_PACKAGE, root / "sluice_steps", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root))
    monkeypatch.setenv("SLUICE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return root / "sluice_steps"


def batch(dag_id: str) -> RunOutcome:
    """The ``batch`` step: pure (its spec says so), so the cache may serve it."""
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        MLStepOperator(
            task_id="batch",
            image="ml-steps",
            command=["sluice-step", "batch"],
            step_params={"interval_start": "2026-01-01T00:00:00+00:00", "rows": 20},
            outputs={"batch": "batch.parquet"},
            retries=0,
        )
    return run_dag_object(dag)


def test_an_edited_step_runs_again_and_its_reverted_code_is_served_from_the_cache(
    airflow_db: Path, step_package: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_id = f"cache_code_{next(_ids)}"
    original = (step_package / "batch.py").read_text()
    assert batch(dag_id).task("batch").cache_state == "miss"

    (step_package / "batch.py").write_text(
        original.replace(EDIT_MARK, EDIT_MARK + '    print("the edited batch ran")\n')
    )
    capfd.readouterr()
    edited = batch(dag_id).task("batch")
    assert edited.state == "success" and edited.cache_state == "miss"
    assert "the edited batch ran" in "".join(capfd.readouterr())

    (step_package / "batch.py").write_text(original)
    assert batch(dag_id).task("batch").cache_state == "hit"
