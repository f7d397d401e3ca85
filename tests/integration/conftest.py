"""Integration fixtures: a real PostgreSQL (running or throwaway) holding a real Airflow 3 schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database
from tests.support.s3 import moto_s3


@pytest.fixture(scope="module")
def airflow_postgres(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database migrated by the real ``airflow db migrate`` (about 6 s)."""
    with fresh_database(pg_server, "sluice_af") as url:
        home = tmp_path_factory.mktemp("airflow-home")
        env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}
        airflow = Path(sys.executable).parent / "airflow"
        proc = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield url


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 server per module (see tests.support.s3)."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3/s3fs at the moto server with dummy credentials; returns the endpoint."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint
