"""platform.yaml loading: one source of truth shared with the chart's values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sluice.platform import PlatformError, load_platform

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "pools": [{"name": "default", "queues": ["default"]}],
    "profiles": {"default": {"cpu": "1", "memory": "1Gi"}},
    "artifacts": {"root": "/tmp/artifacts"},
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load(tmp_path: Path, **changes: object) -> object:
    return load_platform(write(tmp_path, {**BASE, **changes}))


def test_without_a_file_the_charts_default_values_are_read_in_laptop_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLUICE_PLATFORM_FILE", raising=False)
    monkeypatch.delenv("SLUICE_LAUNCHER", raising=False)
    platform = load_platform()
    assert [p.name for p in platform.pools] == ["default", "highmem", "gpu"]
    assert platform.launcher.type == "local"
    assert "://" not in platform.artifacts.root


def test_env_overrides_choose_the_launcher_without_editing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_LAUNCHER", "kubernetes")
    monkeypatch.setenv("SLUICE_ARTIFACT_ROOT", "s3://bucket/root")
    platform = load(tmp_path)
    assert platform.launcher.type == "kubernetes"
    assert platform.artifacts.root == "s3://bucket/root"


def test_unknown_field_is_named_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"pools\.0\.concurency: unknown field"):
        load(tmp_path, pools=[{"name": "default", "queues": ["default"], "concurency": 4}])


def test_two_pools_claiming_one_queue_are_refused(tmp_path: Path) -> None:
    pools = [{"name": "a", "queues": ["q"]}, {"name": "b", "queues": ["q"]}]
    with pytest.raises(PlatformError, match="queue 'q' is claimed by pools 'a' and 'b'"):
        load(tmp_path, pools=pools)


def test_a_pool_claiming_the_kubernetes_queue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="routes to the KubernetesExecutor"):
        load(tmp_path, pools=[{"name": "a", "queues": ["kubernetes"]}])


def test_pool_name_must_be_a_dns_label(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"pools\.0\.name: .*'High_Mem' is not a DNS label"):
        load(tmp_path, pools=[{"name": "High_Mem", "queues": ["q"]}])


def test_pool_without_queues_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"pools\.0\.queues"):
        load(tmp_path, pools=[{"name": "a", "queues": []}])


def test_min_replicas_above_max_is_refused(tmp_path: Path) -> None:
    pools = [{"name": "a", "queues": ["q"], "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}]
    with pytest.raises(PlatformError, match=r"minReplicas \(5\) is greater than maxReplicas \(2\)"):
        load(tmp_path, pools=pools)


def test_gpu_count_without_resource_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"gpu\.resource is empty"):
        load(tmp_path, profiles={"g": {"gpu": {"count": 1}}})


def test_unknown_profile_lists_the_profiles_that_exist(tmp_path: Path) -> None:
    platform = load(tmp_path, profiles={"default": {}, "highmem": {"memory": "16Gi"}})
    with pytest.raises(PlatformError, match="unknown profile 'gpu'; profiles that exist: default, highmem"):
        platform.profile("gpu")


def test_missing_file_says_which_variable_names_it(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="SLUICE_PLATFORM_FILE"):
        load_platform(tmp_path / "absent.yaml")


def test_step_image_short_names_resolve_to_pinned_refs(tmp_path: Path) -> None:
    platform = load(tmp_path, stepImages={"ml-steps": {"repository": "reg/ml-steps", "tag": "1.2.3"}})
    assert platform.image_ref("ml-steps") == "reg/ml-steps:1.2.3"
    assert platform.image_ref("other/image:4") == "other/image:4"


def test_a_step_image_digest_pins_its_ref(tmp_path: Path) -> None:
    """The kubelet then pulls exactly that content, and the step cache keys on it."""
    digest = "sha256:" + "0a" * 32
    platform = load(tmp_path, stepImages={"ml-steps": {"repository": "reg/ml-steps", "tag": "1.2.3", "digest": digest}})
    assert platform.image_ref("ml-steps") == f"reg/ml-steps:1.2.3@{digest}"


def test_a_malformed_step_image_digest_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"stepImages\.ml-steps\.digest: String should match pattern"):
        load(tmp_path, stepImages={"ml-steps": {"repository": "r", "tag": "1", "digest": "sha256:abc"}})


def test_step_image_fields_are_the_charts_schema_fields() -> None:
    """The chart renders stepImages verbatim into platform.yaml: a field the schema allows and the model
    refuses would break every component's platform load."""
    import json

    from sluice.platform import StepImage

    schema = json.loads((REPO / "charts" / "sluice" / "values.schema.json").read_text())
    fields = schema["properties"]["stepImages"]["additionalProperties"]["properties"]
    assert sorted(fields) == sorted(field.alias for field in StepImage.model_fields.values())
