"""``sluice demo`` honours what a DAG file declares it needs (``EXAMPLE = sluice.demo.Example(...)``), for a DAG the
platform has never heard of: its data is made first, a missing model stops it naming the example to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_demo_command import run_demo

SCORER = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from sluice.demo import Example

EXAMPLE = Example(requires_model="nobody-registered-this", registered_by="my_trainer", model_param="model")

with DAG("my_scorer", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):
    EmptyOperator(task_id="never_runs")
"""

READER = """
from datetime import datetime
from pathlib import Path
from airflow.sdk import DAG, task
from sluice.demo import Example, data_dir


def make_input(folder: Path) -> None:
    (folder / "reader-input.txt").write_text("made by prepare")


EXAMPLE = Example(prepare=make_input)

with DAG("my_reader", schedule=None, start_date=datetime(2026, 1, 1), default_args={"owner": "t"}):

    @task
    def read() -> dict:
        text = (data_dir() / "reader-input.txt").read_text()  # fails the task when prepare did not run
        return {"metrics": {"chars": len(text)}}

    read()
"""


@pytest.mark.slow  # `sluice demo` as a process (~10 s)
def test_a_declared_model_that_is_missing_stops_the_demo_naming_the_example_that_registers_it(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "my_scorer.py").write_text(SCORER)
    result = run_demo(tmp_path / "home", "my_scorer", "--dags-folder", str(dags))
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    out = " ".join(result.stdout.split())
    assert "my_scorer scores with the current version of model 'nobody-registered-this'" in out, out
    assert "run `sluice demo my_trainer` first" in out, out
    named = run_demo(tmp_path / "home", "my_scorer", "--dags-folder", str(dags), "--conf", '{"model": "other"}')
    assert "model 'other'" in " ".join(named.stdout.split()), "the declared param names the model to check"


@pytest.mark.slow  # a `sluice demo` run (~20 s)
def test_the_demo_makes_a_declared_examples_data_before_running_it(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "my_reader.py").write_text(READER)
    home = tmp_path / "home"
    result = run_demo(home, "my_reader", "--dags-folder", str(dags))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (home / "demo-data" / "reader-input.txt").read_text() == "made by prepare"
    assert ": success in" in result.stdout
