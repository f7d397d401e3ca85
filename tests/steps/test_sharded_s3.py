"""The sharded steps on an object store (moto's S3 server stands in for MinIO or any S3): shards are read
and written through fsspec, streamed, with no whole-shard copy on local disk, and nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
import s3fs
from sluice_steps import synth
from sluice_steps.contract import atomic_open

from tests.steps.conftest import STEP_BIN, contract_env
from tests.support.s3 import moto_s3

BUCKET = "sluice-scale"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server, a bucket, and the environment that points fsspec (here and in the steps) at it.

    s3fs caches a filesystem per set of options and reads the endpoint from the environment when it makes one:
    the cache is cleared on the way in and out, so no module talks to another module's (stopped) server.
    """
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with moto_s3() as endpoint, pytest.MonkeyPatch.context() as patch:
        env["AWS_ENDPOINT_URL"] = endpoint
        for name, value in env.items():
            patch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs_now().mkdir(BUCKET)
        yield env
        s3fs.S3FileSystem.clear_instance_cache()


def s3fs_now() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", skip_instance_cache=True)


def run_on_s3(
    step: str, prefix: str, inputs: dict[str, object], outputs: dict[str, str], tmpdir: Path, batched: bool = True
) -> str:
    """Run a step whose inputs and outputs are s3:// URIs; TMPDIR is a folder the test then checks is empty."""
    params = {"batch_rows": 2048} if batched else {}  # merge_stats reads no batches: its spec has no batch_rows
    env = {**contract_env(prefix, inputs, outputs, params), "TMPDIR": str(tmpdir)}
    done = subprocess.run([STEP_BIN, step], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return prefix


@pytest.mark.slow  # three step processes
def test_a_shard_is_ingested_and_featurized_on_s3_without_local_copies(s3: dict[str, str], tmp_path: Path) -> None:
    source = f"s3://{BUCKET}/raw"
    synth.generate(source, rows=6_000, shard_rows=6_000)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    ingest = run_on_s3(
        "ingest_shard",
        f"s3://{BUCKET}/run/ingest/0",
        {"shard": f"{source}/part-00000.parquet"},
        {"stats": "stats.json"},
        tmpdir,
    )
    stats = run_on_s3(
        "merge_stats",
        f"s3://{BUCKET}/run/stats",
        {"parts": [f"{ingest}/stats.json"]},
        {"stats": "stats.json"},
        tmpdir,
        batched=False,
    )
    featurize = run_on_s3(
        "featurize_shard",
        f"s3://{BUCKET}/run/featurize/0",
        {"shard": f"{source}/part-00000.parquet", "stats": f"{stats}/stats.json"},
        {"features": "features.parquet", "sample": "sample.parquet"},
        tmpdir,
    )
    fs = s3fs_now()
    with fs.open(f"{featurize}/features.parquet", "rb") as handle:
        features = pq.read_table(handle)
    with fs.open(f"{ingest}/_result.json", "r") as handle:
        ingested = json.load(handle)["metrics"]
    assert features.num_rows == ingested["rows"] == 6_000 - ingested["duplicates"]
    assert list(tmpdir.iterdir()) == [], "a step copied a shard to local disk"


def test_a_streamed_upload_that_fails_leaves_no_object_and_no_open_upload(s3: dict[str, str]) -> None:
    target = f"s3://{BUCKET}/partial/scores.parquet"
    with pytest.raises(RuntimeError, match="failed mid-shard"), atomic_open(target) as handle:
        handle.write(os.urandom(12 * 2**20))  # past s3fs's 5 MiB block: a multipart upload is under way
        raise RuntimeError("failed mid-shard")
    fs = s3fs_now()
    assert not fs.exists(target)
    uploads = fs.call_s3("list_multipart_uploads", Bucket=BUCKET)
    assert not uploads.get("Uploads"), "the aborted upload's parts were left behind"


def test_a_streamed_upload_lands_whole_when_the_block_ends(s3: dict[str, str]) -> None:
    target = f"s3://{BUCKET}/whole/scores.parquet"
    data = os.urandom(7 * 2**20)
    with atomic_open(target) as handle:
        handle.write(data[: 6 * 2**20])
        assert not s3fs_now().exists(target), "visible before the block ended"
        handle.write(data[6 * 2**20 :])
    assert s3fs_now().cat_file(target) == data
