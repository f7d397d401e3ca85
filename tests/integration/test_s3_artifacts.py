"""The cluster's artifact path: an ``s3://`` artifact root, through real DAG runs and real steps.

No S3 can be reached from here, so moto's S3 server on 127.0.0.1 stands in for MinIO/S3 (said so, as the
standards ask); s3fs/botocore talk to it over HTTP exactly as they would to MinIO (``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import boto3
import pandas as pd
import pytest
from airflow.sdk import DAG
from sluice import artifacts
from sluice.operators import MLStepOperator

from tests.support.runs import run_dag_object

pytestmark = pytest.mark.integration
BUCKET = "sluice-artifacts"


@pytest.fixture
def s3_root(s3_env: str, monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("SLUICE_ARTIFACT_ROOT", f"s3://{BUCKET}/runs")
    return f"s3://{BUCKET}/runs"


def test_steps_write_to_s3_and_results_come_back_through_it(s3_root: str, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    pd.DataFrame({"id": [1, 2, 3], "target": [0, 1, 0]}).to_csv(source, index=False)
    with DAG("s3_artifacts", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        ingest = MLStepOperator(
            task_id="ingest",
            image="ml-steps",
            command=["sluice-step", "ingest"],
            step_params={"source": str(source)},
            outputs={"data": "data.parquet"},
            retries=0,
        )
        MLStepOperator(
            task_id="validate",
            image="ml-steps",
            command=["sluice-step", "validate"],
            inputs={"data": ingest.output["data"]},
            step_params={"min_rows": 3},
            outputs={"report": "report.json"},
            retries=0,
        )
    outcome = run_dag_object(dag)
    assert outcome.succeeded
    uri = outcome.task("ingest").outputs["data"]
    assert uri.startswith(f"{s3_root}/s3_artifacts/")
    assert pd.read_parquet(uri)["id"].tolist() == [1, 2, 3]
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert not [k for k in keys if ".tmp-" in k], "no temporary object may remain"
    assert outcome.task("validate").metrics["rows"] == 3


def test_a_rerun_is_served_from_the_s3_cache(s3_root: str, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    pd.DataFrame({"id": [1, 2], "target": [0, 1]}).to_csv(source, index=False)

    def build() -> DAG:
        with DAG("s3_cache", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
            ingest = MLStepOperator(
                task_id="ingest",
                image="ml-steps",
                command=["sluice-step", "ingest"],
                step_params={"source": str(source)},
                outputs={"data": "data.parquet"},
            )
            MLStepOperator(
                task_id="validate",
                image="ml-steps",
                command=["sluice-step", "validate"],
                inputs={"data": ingest.output["data"]},
                outputs={"report": "report.json"},
            )
        return dag

    run_dag_object(build())
    again = run_dag_object(build())
    assert again.succeeded and again.task("validate").cache_hit


def test_the_cache_copies_an_artifact_inside_s3_without_downloading_it(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server-side (CopyObject): the object appears whole at the target; the bytes never pass through here.
    (moto's server runs in this process, so memory cannot tell; opening any S3 file for the copy fails instead.)"""
    import s3fs

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sluice-copy")
    data = os.urandom(12 * 2**20)
    s3.put_object(Bucket="sluice-copy", Key="runs/features.parquet", Body=data)

    def no_streaming(*args: object, **kwargs: object) -> None:
        raise AssertionError("copy_atomic opened an S3 file: the bytes went through this process")

    monkeypatch.setattr(s3fs.S3FileSystem, "_open", no_streaming)
    artifacts.copy_atomic("s3://sluice-copy/runs/features.parquet", "s3://sluice-copy/_cache/k/outputs/features")
    assert s3.get_object(Bucket="sluice-copy", Key="_cache/k/outputs/features")["Body"].read() == data
