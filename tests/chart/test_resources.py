"""Every resources block in values: no unknown key under requests or limits, and no request above its limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.render import CHART, RenderError, render_chart

SHOW = ["templates/configmap-platform.yaml"]
POOL = {"name": "p", "queues": ["q"]}


def resources_blocks(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of every object-valued `resources` property in the schema, outside the pools list."""
    found = []
    for key, child in node.get("properties", {}).items():
        if key == "resources" and child.get("type") == "object":
            found.append(path)
        elif child.get("type") == "object":
            found += resources_blocks(child, (*path, key))
    return found


BLOCKS = resources_blocks(json.loads((CHART / "values.schema.json").read_text()))


def nested(path: tuple[str, ...], resources: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {"resources": resources}
    for key in reversed(path):
        values = {key: values}
    return values


def refusal(values: dict[str, Any]) -> str:
    with pytest.raises(RenderError) as refused:
        render_chart(values, show_only=SHOW)
    return str(refused.value)


def test_the_schema_has_a_resources_block_for_every_component() -> None:
    assert {".".join(p) for p in BLOCKS} == {
        "poolDefaults",  # every pool's resources, merged under the pool's own
        "apiServer",
        "scheduler",
        "dagProcessor",
        "triggerer",
        "migrations",
        "createUserJob",
        "dags.gitSync",
        "postgresql",
        "redis",
        "kubernetesExecutor",
        "metrics",
    }


@pytest.mark.parametrize("path", BLOCKS, ids=".".join)
def test_a_typo_under_limits_is_refused(path: tuple[str, ...]) -> None:
    message = refusal(nested(path, {"limits": {"memroy": "2Gi"}}))
    assert f"/{'/'.join(path)}/resources/limits" in message and "'memroy' not allowed" in message


def test_a_typo_under_a_pools_limits_is_refused() -> None:
    message = refusal({"pools": [{**POOL, "resources": {"limits": {"memroy": "2Gi"}}}]})
    assert "/pools/0/resources/limits" in message and "'memroy' not allowed" in message


@pytest.mark.parametrize("path", BLOCKS, ids=".".join)
def test_a_request_above_its_limit_is_refused_naming_the_block(path: tuple[str, ...]) -> None:
    message = refusal(nested(path, {"requests": {"memory": "4Gi"}, "limits": {"memory": "2Gi"}}))
    assert f"{'.'.join(path)}.resources: requests.memory (4Gi) exceeds limits.memory (2Gi)" in message


def test_a_pools_request_above_its_limit_is_refused_naming_the_pool() -> None:
    resources = {"requests": {"memory": "4Gi"}, "limits": {"memory": "2Gi"}}
    message = refusal({"pools": [{"name": "default", "queues": ["default"], "resources": resources}]})
    assert "pools[0] (default).resources: requests.memory (4Gi) exceeds limits.memory (2Gi)" in message


@pytest.mark.parametrize(
    ("key", "requested", "limit"),
    [
        ("cpu", "1", "1000m"),
        ("cpu", "1.5", "1500m"),
        ("cpu", 2, "2"),
        ("cpu", "250m", 0.25),
        ("memory", "1Gi", "1024Mi"),
        ("memory", "1G", "1Gi"),
        ("memory", "1k", "1Ki"),
        ("memory", "2048", "2Ki"),
        ("memory", "1.5Gi", "1536Mi"),
        ("memory", "1000M", "1G"),
        ("memory", "1Ti", "1024Gi"),
        ("memory", "1T", "1Ti"),
        ("ephemeral-storage", "10Gi", "20Gi"),
    ],
)
def test_a_request_at_or_below_its_limit_in_other_units_is_accepted(key: str, requested: Any, limit: Any) -> None:
    render_chart({"scheduler": {"resources": {"requests": {key: requested}, "limits": {key: limit}}}}, show_only=SHOW)


@pytest.mark.parametrize(
    ("key", "requested", "limit"),
    [
        ("cpu", "1001m", "1"),
        ("cpu", "1.6", "1500m"),
        ("cpu", 3, "2"),
        ("memory", "1Gi", "1G"),
        ("memory", "1025Mi", "1Gi"),
        ("memory", "2049", "2Ki"),
        ("memory", "1.1Ti", "1T"),
        ("ephemeral-storage", "21Gi", "20Gi"),
    ],
)
def test_a_request_above_its_limit_in_other_units_is_refused(key: str, requested: Any, limit: Any) -> None:
    message = refusal({"scheduler": {"resources": {"requests": {key: requested}, "limits": {key: limit}}}})
    assert f"scheduler.resources: requests.{key} ({requested}) exceeds limits.{key} ({limit})" in message
