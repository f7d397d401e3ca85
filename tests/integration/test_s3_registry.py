"""The model registry (``sluice_steps.registry``) on an ``s3://`` root: the object-store path, marker last.

No S3 can be reached from here, so moto's S3 server on 127.0.0.1 stands in for MinIO/S3, as in
test_s3_artifacts.py; s3fs talks to it over HTTP exactly as it would to MinIO (``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import s3fs
from fsspec.core import url_to_fs
from sluice_steps import registry
from sluice_steps.contract import StepError

pytestmark = pytest.mark.integration
FILES = {"model.joblib": b"model-v1", "MODEL_CARD.md": b"# card", "metrics.json": b"{}"}


@pytest.fixture
def bucket(s3_env: str) -> Iterator[str]:
    """A fresh bucket per test. fsspec reuses S3FileSystem instances (bound to the endpoint they were made
    with), so the instance cache is cleared on both sides: no instance from another module's server."""
    s3fs.S3FileSystem.clear_instance_cache()
    name = f"registry-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    yield name
    s3fs.S3FileSystem.clear_instance_cache()


def keys(bucket: str) -> list[str]:
    return sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []))


def body(bucket: str, key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_versions_are_published_whole_and_current_follows_them(bucket: str) -> None:
    base = f"s3://{bucket}/models/m"
    assert registry.version_names(base) == [] and registry.read_current(base) is None
    for version in ("1", "2"):
        assert registry.next_version(base) == version
        files = {**FILES, "model.joblib": f"model-v{version}".encode()}
        uri = registry.publish_version(base, version, files, {"model_sha256": f"sha-{version}"})
        assert uri == f"{base}/{version}"
        registry.set_current(base, version)
    prefix = "models/m"
    assert keys(bucket) == sorted(
        [f"{prefix}/{v}/{name}" for v in ("1", "2") for name in [*FILES, registry.MARKER]] + [f"{prefix}/current"]
    ), "model + marker per version, one current pointer, no temporary object"
    current = registry.read_current(base)
    assert current["version"] == "2" and current["uri"] == f"{base}/2" and current["model_sha256"] == "sha-2"
    assert json.loads(body(bucket, f"{prefix}/current"))["version"] == "2"
    marker = registry.read_version(base, "2")
    assert marker["version"] == "2" and marker["files"] == sorted(FILES) and marker["model_sha256"] == "sha-2"
    assert registry.version_names(base) == ["1", "2"] and registry.next_version(base) == "3"


def test_an_existing_version_is_refused_and_its_objects_left_intact(bucket: str) -> None:
    base = f"s3://{bucket}/models/m"
    registry.publish_version(base, "1", FILES, {"model_sha256": "ours"})
    registry.set_current(base, "1")
    before = {key: body(bucket, key) for key in keys(bucket)}
    with pytest.raises(registry.VersionExists, match="never overwritten"):
        registry.publish_version(base, "1", {"model.joblib": b"other", "extra.bin": b"x"}, {"model_sha256": "x"})
    assert {key: body(bucket, key) for key in keys(bucket)} == before, "not one object added or changed"
    assert registry.read_current(base)["version"] == "1"


def test_a_version_another_writer_published_after_this_process_listed_is_still_refused(bucket: str) -> None:
    """A listing cached in the (reused) S3FileSystem must not hide a version: overwriting it was the bug."""
    base = f"s3://{bucket}/models/m"
    registry.publish_version(base, "1", FILES, {})
    assert registry.version_names(base) == ["1"]  # this process has now listed the registry
    other = boto3.client("s3")  # another publisher, e.g. the next run's publish step
    other.put_object(Bucket=bucket, Key="models/m/2/model.joblib", Body=b"theirs")
    other.put_object(Bucket=bucket, Key=f"models/m/2/{registry.MARKER}", Body=b'{"version": "2"}')
    assert registry.version_names(base) == ["1", "2"] and registry.next_version(base) == "3"
    with pytest.raises(registry.VersionExists, match="never overwritten"):
        registry.publish_version(base, "2", {"model.joblib": b"mine"}, {})
    assert body(bucket, "models/m/2/model.joblib") == b"theirs"
    assert registry.read_version(base, "2") == {"version": "2"}


def test_a_reader_never_sees_a_version_before_its_marker(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every PUT of a publish is watched: until the marker lands the version reads as absent and current
    stays on the previous version; a publisher dying before the marker leaves a version no reader uses."""
    base = f"s3://{bucket}/models/m"
    registry.publish_version(base, "1", FILES, {})
    registry.set_current(base, "1")
    fs, _ = url_to_fs(base)  # the instance the registry gets too (fsspec reuses it)
    real_pipe = fs.pipe_file
    seen: list[tuple[str, Any, str]] = []

    def watched(path: str, data: bytes, *args: Any, **kwargs: Any) -> Any:
        version = path.split("/models/m/", 1)[1].split("/", 1)[0]
        if version != registry.POINTER:
            seen.append((path.rsplit("/", 1)[-1], registry.read_version(base, version), read_current_version()))
        if path.endswith(f"/3/{registry.MARKER}"):
            raise ConnectionError("publisher died before the marker")
        return real_pipe(path, data, *args, **kwargs)

    def read_current_version() -> str:
        return registry.read_current(base)["version"]

    with monkeypatch.context() as patch:
        patch.setattr(fs, "pipe_file", watched)
        registry.publish_version(base, "2", FILES, {})
        assert [name for name, _, _ in seen] == [*sorted(FILES), registry.MARKER], "the marker is the last PUT"
        assert all(meta is None and cur == "1" for _, meta, cur in seen), seen
        registry.set_current(base, "2")
        with pytest.raises(ConnectionError):
            registry.publish_version(base, "3", FILES, {})
    assert "models/m/3/model.joblib" in keys(bucket) and f"models/m/3/{registry.MARKER}" not in keys(bucket)
    assert registry.read_version(base, "3") is None, "objects without a marker are not a version to read"
    with pytest.raises(StepError, match="not complete"):
        registry.set_current(base, "3")
    assert registry.read_current(base)["version"] == "2"
    complete = [v for v in registry.version_names(base) if registry.read_version(base, v) is not None]
    assert complete == ["1", "2"], "a reader listing versions by their marker never sees 3"
    assert registry.next_version(base) == "4", "an incomplete number is never reused"
    with pytest.raises(registry.VersionExists):
        registry.publish_version(base, "3", FILES, {})
