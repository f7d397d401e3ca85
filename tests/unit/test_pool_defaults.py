"""The package refuses what the chart's schema refuses, with the field's name, and merges `poolDefaults` as the
chart does (the chart side and the shared table of bad values: tests/chart/test_platform_parity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sluice import platform as platform_module
from sluice.platform import PlatformError, load_platform, merge_pool_defaults, parse_platform

PROFILES = {"default": {}}


def parse(**data: object):
    return parse_platform({"profiles": PROFILES, **data}, Path("platform.yaml"))


@pytest.fixture
def laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """load_platform() with no platform file, reading `values` as the chart's values.yaml."""
    for name in ("SLUICE_PLATFORM_FILE", "SLUICE_LAUNCHER", "SLUICE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "home"))

    def load(values: dict):
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        monkeypatch.setattr(platform_module, "chart_values_file", lambda: path)
        return load_platform()

    return load


def test_laptop_mode_merges_the_values_pool_defaults_into_each_pool(laptop) -> None:
    platform = laptop(
        {
            "poolDefaults": {"concurrency": 3, "autoscaling": {"maxReplicas": 9, "scaleDown": {"podsPerPeriod": 2}}},
            "pools": [
                {"name": "a", "queues": ["a"]},
                {"name": "b", "queues": ["b"], "autoscaling": {"minReplicas": 0}},
            ],
            "profiles": PROFILES,
        }
    )
    a, b = platform.pools
    assert (a.concurrency, a.autoscaling.max_replicas, a.autoscaling.scale_down.pods_per_period) == (3, 9, 2)
    assert (b.concurrency, b.autoscaling.min_replicas, b.autoscaling.max_replicas) == (3, 0, 9)


def test_a_platform_file_with_pool_defaults_is_merged_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    data = {
        "poolDefaults": {"terminationGracePeriodSeconds": 900},
        "pools": [{"name": "a", "queues": ["a"]}],
        "profiles": PROFILES,
        "artifacts": {"root": str(tmp_path)},
    }
    path.write_text(yaml.safe_dump(data))
    assert load_platform(path).pools[0].termination_grace_period_seconds == 900


def test_the_pools_own_zero_false_and_null_win_and_lists_are_replaced() -> None:
    defaults = {"concurrency": 8, "tolerations": [{"key": "a"}], "autoscaling": {"enabled": True, "minReplicas": 1}}
    pool = {"name": "p", "tolerations": [], "autoscaling": {"enabled": False, "minReplicas": 0}, "x": None}
    assert merge_pool_defaults(defaults, pool) == {
        "concurrency": 8,
        "tolerations": [],
        "autoscaling": {"enabled": False, "minReplicas": 0},
        "name": "p",
        "x": None,
    }


@pytest.mark.parametrize("queue", ["a'b", 'a"b', "a,b", "a b", ""])
def test_a_queue_name_that_would_break_the_keda_sql_or_celery_queues_is_refused(queue: str) -> None:
    with pytest.raises(PlatformError, match=r"pools\.0\.queues\.0: queue name .* has a quote, a comma or whitespace"):
        parse(pools=[{"name": "p", "queues": [queue]}])


def test_a_pool_name_longer_than_its_worker_label_allows_is_refused_saying_why() -> None:
    with pytest.raises(PlatformError, match=r"pools\.0\.name: .* has 57 characters; use at most 56: .*worker-<name>"):
        parse(pools=[{"name": "p" * 57, "queues": ["q"]}])
    assert parse(pools=[{"name": "p" * 56, "queues": ["q"]}]).pools[0].name == "p" * 56


def test_a_memory_that_is_not_a_quantity_is_refused_at_load() -> None:
    with pytest.raises(PlatformError, match=r"profiles\.big\.memory: 'lots' is not a Kubernetes quantity"):
        parse(pools=[{"name": "p", "queues": ["q"]}], profiles={"big": {"memory": "lots"}})


def test_numeric_quantities_are_taken_as_the_schema_takes_them() -> None:
    profile = parse(pools=[{"name": "p", "queues": ["q"]}], profiles={"n": {"cpu": 2, "memory": 0.5}}).profiles["n"]
    assert (profile.cpu, profile.memory) == ("2", "0.5")


def test_a_number_written_as_text_is_refused_not_coerced() -> None:
    with pytest.raises(PlatformError, match=r"pools\.0\.concurrency: '8' is not an integer"):
        parse(pools=[{"name": "p", "queues": ["q"], "concurrency": "8"}])


def test_a_request_above_its_limit_is_compared_across_units() -> None:
    resources = {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}}
    with pytest.raises(PlatformError, match=r"resources\.requests\.cpu \(1500m\) exceeds resources\.limits\.cpu \(1\)"):
        parse(pools=[{"name": "p", "queues": ["q"], "resources": resources}])


def test_a_typo_in_resources_names_the_key_and_the_allowed_ones() -> None:
    with pytest.raises(PlatformError, match=r"resources\.limits: unknown key 'memroy'; use 'cpu', 'memory'"):
        parse(pools=[{"name": "p", "queues": ["q"], "resources": {"limits": {"memroy": "1Gi"}}}])


def test_two_pools_with_one_name_are_refused() -> None:
    with pytest.raises(PlatformError, match="pool name 'p' is used twice"):
        parse(pools=[{"name": "p", "queues": ["a"]}, {"name": "p", "queues": ["b"]}])
