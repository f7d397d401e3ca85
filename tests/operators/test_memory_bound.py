"""The bounded-memory promise of the sharded steps, through real Airflow runs with the local launcher: under one
profile, the streaming ingest of every shard passes, and a step that loads the whole set is stopped with an error
naming the profile (the launcher watches the step's process tree, as a pod's cgroup limit would)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG
from sluice.operators import MLStepOperator
from sluice_steps import synth

from tests.support.runs import run_dag_object

# 1 M rows (~170 MB of Parquet): the streaming ingest peaks at ~250 MB whatever the shard's size; reading it
# all into pandas peaks at ~580 MB.
PROFILE = {"bounded": {"cpu": "1", "memory": "400Mi"}}
LOAD_EVERYTHING = [sys.executable, str(Path(__file__).parent / "steps" / "load_everything.py")]

pytestmark = pytest.mark.slow  # generates 1 M rows and runs five steps


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("million")
    manifest = synth.generate(str(directory), rows=1_000_000, shard_rows=250_000)
    return [str(directory / name) for name in manifest["files"]]


def test_streaming_steps_fit_the_profile_and_a_load_everything_step_is_stopped_naming_it(
    airflow_db: Path, with_profiles, shards: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    with_profiles(PROFILE)
    with DAG("memory_bound", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        MLStepOperator.partial(
            task_id="ingest",
            image="ml-steps",
            command=["sluice-step", "ingest_shard"],
            outputs={"stats": "stats.json"},
            profile="bounded",
            retries=0,
        ).expand(inputs=[{"shard": uri} for uri in shards])
        MLStepOperator(
            task_id="load_everything",
            image="ml-steps",
            command=LOAD_EVERYTHING,
            inputs={"shards": shards},
            outputs={"summary": "summary.json"},
            profile="bounded",
            retries=0,
        )
    outcome = run_dag_object(dag)
    log = capfd.readouterr()
    ingests = outcome.mapped("ingest")
    assert [t.state for t in ingests] == ["success"] * 4
    limit = 400 * 2**20
    for task in ingests:
        assert task.peak_memory is not None and task.peak_memory[1] == limit
        assert task.peak_memory[0] < limit
    assert outcome.task("load_everything").state == "failed"
    assert "exceeded memory limit of profile 'bounded' (400Mi)" in log.out + log.err
