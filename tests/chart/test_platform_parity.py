"""One source of truth for the platform's shape: the chart and the `sluice` package agree on pools and profiles.

The chart's values.schema.json (hand-written, with descriptions) and `fail` checks refuse bad pools and profiles
at `helm template`; `sluice.platform`'s pydantic models refuse them when a platform file (or, on a laptop, the
chart's values.yaml) is loaded. The same table of bad values is run through both, and good values through both:
a value one side takes and the other refuses would break a platform file used outside the chart late (in the KEDA
SQL, `celery --queues` or quantity parsing). Pool defaults live once, in values.yaml's `poolDefaults`: the chart
merges them into every pool (`sluice.pool`) and renders the merged pools into platform.yaml, and the package
merges the same way when it reads values.yaml.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice import platform as platform_module
from sluice.platform import Platform, PlatformError, Pool, load_platform, parse_platform

from tests.chart.render import CHART, RenderError, env_of, get, render_chart

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
P = {"name": "p", "queues": ["q"]}


def helm_merged(overrides: dict[str, Any]) -> dict[str, Any]:
    """The values helm computes from the chart's values.yaml and `overrides` (maps merge, lists replace)."""

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return merge(VALUES, overrides)


@pytest.fixture
def package_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Load the platform the way the package does on a laptop: from a chart values file, no platform file."""
    for name in ("SLUICE_PLATFORM_FILE", "SLUICE_LAUNCHER", "SLUICE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "home"))

    def load(overrides: dict[str, Any]) -> Platform:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(helm_merged(overrides)))
        monkeypatch.setattr(platform_module, "chart_values_file", lambda: path)
        return load_platform()

    return load


def pool(**fields: Any) -> dict[str, Any]:
    return {"pools": [{**P, **fields}]}


def profile(**fields: Any) -> dict[str, Any]:
    return {"profiles": {"x": fields}}


# name -> (values, where the package's message must point: the field's dotted path)
BAD = {
    "a single quote in a queue": ({"pools": [{"name": "p", "queues": ["a'b"]}]}, "pools.0.queues.0"),
    "a double quote in a queue": ({"pools": [{"name": "p", "queues": ['a"b']}]}, "pools.0.queues.0"),
    "a comma in a queue": ({"pools": [{"name": "p", "queues": ["a,b"]}]}, "pools.0.queues.0"),
    "whitespace in a queue": ({"pools": [{"name": "p", "queues": ["a b"]}]}, "pools.0.queues.0"),
    "an empty queue name": ({"pools": [{"name": "p", "queues": [""]}]}, "pools.0.queues.0"),
    "a queue listed twice in one pool": ({"pools": [{"name": "p", "queues": ["q", "q"]}]}, "pools.0.queues"),
    "a pool with no queues": ({"pools": [{"name": "p", "queues": []}]}, "pools.0.queues"),
    "a pool without a queues key": ({"pools": [{"name": "p"}]}, "pools.0.queues"),
    "a pool without a name": ({"pools": [{"queues": ["q"]}]}, "pools.0.name"),
    "no pools at all": ({"pools": []}, "pools"),
    "a pool name that is not a DNS label": (pool(name="High_Mem"), "pools.0.name"),
    "a pool name ending in a dash": (pool(name="p-"), "pools.0.name"),
    "a pool name of 57 characters": (pool(name="p" * 57), "pools.0.name"),
    "two pools with one name": ({"pools": [P, {"name": "p", "queues": ["r"]}]}, "pool name 'p' is used twice"),
    "two pools claiming one queue": ({"pools": [P, {"name": "o", "queues": ["q"]}]}, "queue 'q'"),
    "the kubernetes queue claimed by a pool": ({"pools": [{"name": "p", "queues": ["kubernetes"]}]}, "kubernetes"),
    "a zero concurrency": (pool(concurrency=0), "pools.0.concurrency"),
    "a concurrency written as a string": (pool(concurrency="8"), "pools.0.concurrency"),
    "a concurrency written as a boolean": (pool(concurrency=True), "pools.0.concurrency"),
    "a fractional concurrency": (pool(concurrency=2.5), "pools.0.concurrency"),
    "a negative grace period": (pool(terminationGracePeriodSeconds=-1), "pools.0.terminationGracePeriodSeconds"),
    "a zero maxTaskDurationSeconds": (pool(maxTaskDurationSeconds=0), "pools.0.maxTaskDurationSeconds"),
    "a grace period shorter than the longest task": (
        pool(terminationGracePeriodSeconds=60, maxTaskDurationSeconds=600),
        "pools.0",
    ),
    "a memory request that is not a quantity": (
        pool(resources={"requests": {"memory": "lots"}}),
        "pools.0.resources.requests.memory",
    ),
    "a negative cpu limit": (pool(resources={"limits": {"cpu": -1}}), "pools.0.resources.limits.cpu"),
    "a typo under resources.limits": (pool(resources={"limits": {"memroy": "2Gi"}}), "pools.0.resources.limits"),
    "a typo in resources": (pool(resources={"request": {"cpu": "1"}}), "pools.0.resources"),
    "a request above its limit": (
        pool(resources={"requests": {"memory": "4Gi"}, "limits": {"memory": "2Gi"}}),
        "pools.0: resources.requests.memory (4Gi) exceeds resources.limits.memory (2Gi)",
    ),
    "a number in a nodeSelector": (pool(nodeSelector={"disk": 1}), "pools.0.nodeSelector.disk"),
    "tolerations that are not a list": (pool(tolerations={"key": "gpu"}), "pools.0.tolerations"),
    "an unknown pool field": (pool(concurency=4), "pools.0.concurency"),
    "autoscaling.enabled written as a string": (pool(autoscaling={"enabled": "yes"}), "pools.0.autoscaling.enabled"),
    "a negative minReplicas": (pool(autoscaling={"minReplicas": -1}), "pools.0.autoscaling.minReplicas"),
    "a zero maxReplicas": (pool(autoscaling={"minReplicas": 0, "maxReplicas": 0}), "pools.0.autoscaling.maxReplicas"),
    "minReplicas above maxReplicas": (pool(autoscaling={"minReplicas": 5, "maxReplicas": 2}), "pools.0.autoscaling"),
    "a zero pollingInterval": (pool(autoscaling={"pollingInterval": 0}), "pools.0.autoscaling.pollingInterval"),
    "a negative cooldownPeriod": (pool(autoscaling={"cooldownPeriod": -1}), "pools.0.autoscaling.cooldownPeriod"),
    "an unknown autoscaling field": (pool(autoscaling={"maxReplica": 3}), "pools.0.autoscaling.maxReplica"),
    "a zero podsPerPeriod": (
        pool(autoscaling={"scaleDown": {"podsPerPeriod": 0}}),
        "pools.0.autoscaling.scaleDown.podsPerPeriod",
    ),
    "a zero periodSeconds": (
        pool(autoscaling={"scaleDown": {"periodSeconds": 0}}),
        "pools.0.autoscaling.scaleDown.periodSeconds",
    ),
    "a negative stabilization window": (
        pool(autoscaling={"scaleDown": {"stabilizationWindowSeconds": -1}}),
        "pools.0.autoscaling.scaleDown.stabilizationWindowSeconds",
    ),
    "a zero concurrency in poolDefaults": ({"poolDefaults": {"concurrency": 0}}, "poolDefaults.concurrency"),
    "an unknown field in poolDefaults": ({"poolDefaults": {"concurency": 4}}, "poolDefaults.concurency"),
    "a bad quantity in poolDefaults": (
        {"poolDefaults": {"resources": {"limits": {"memory": "lots"}}}},
        "poolDefaults.resources.limits.memory",
    ),
    "poolDefaults minReplicas above the pools' maxReplicas": (
        {"poolDefaults": {"autoscaling": {"minReplicas": 9}}},
        "minReplicas (9) is greater than maxReplicas",
    ),
    "a profile memory of lots": (profile(memory="lots"), "profiles.x.memory"),
    "a profile cpu with a unit word": (profile(cpu="1 core"), "profiles.x.cpu"),
    "a negative profile cpu": (profile(cpu=-1), "profiles.x.cpu"),
    "a profile ephemeral storage that is not a quantity": (
        profile(ephemeralStorage="big"),
        "profiles.x.ephemeralStorage",
    ),
    "a negative GPU count": (profile(gpu={"count": -1, "resource": "nvidia.com/gpu"}), "profiles.x.gpu.count"),
    "a GPU count written as a string": (
        profile(gpu={"count": "1", "resource": "nvidia.com/gpu"}),
        "profiles.x.gpu.count",
    ),
    "a GPU count without a resource name": (profile(gpu={"count": 1}), "profiles.x.gpu"),
    "a zero profile cpu": (profile(cpu=0), "profiles.x.cpu"),
    "a zero profile cpu in millicores": (profile(cpu="0m"), "profiles.x.cpu"),
    "a zero profile memory": (profile(memory="0.0Gi"), "profiles.x.memory"),
    "a zero profile ephemeral storage": (profile(ephemeralStorage=0), "profiles.x.ephemeralStorage"),
    "a GPU resource that is not an extended resource name": (
        profile(gpu={"count": 1, "resource": "nvidia gpu!"}),
        "profiles.x.gpu.resource",
    ),
    "a GPU resource without a domain": (profile(gpu={"count": 1, "resource": "gpu"}), "profiles.x.gpu.resource"),
    "a GPU resource in the kubernetes.io domain": (
        profile(gpu={"count": 1, "resource": "kubernetes.io/gpu"}),
        "profiles.x.gpu.resource",
    ),
    "an unknown profile field": (profile(memroy="1Gi"), "profiles.x.memroy"),
    "a zero profile timeout": (profile(timeoutSeconds=0), "profiles.x.timeoutSeconds"),
    "a number in a profile nodeSelector": (profile(nodeSelector={"disk": 1}), "profiles.x.nodeSelector.disk"),
    "a priority class that is a number": (profile(priorityClassName=5), "profiles.x.priorityClassName"),
    "a profile that is not a mapping": ({"profiles": {"x": "big"}}, "profiles.x"),
}

GOOD = {
    "a minimal pool": {"pools": [P]},
    "queues with dots, colons, slashes and underscores": {"pools": [{"name": "p", "queues": ["ml.train:v2", "a/b_c"]}]},
    "a pool name of 56 characters without KEDA": {**pool(name="p" * 56), "keda": {"enabled": False}},
    "a pool name of 40 characters with KEDA": pool(name="p" * 40),
    "explicit zeros and false": pool(
        terminationGracePeriodSeconds=0, autoscaling={"enabled": False, "minReplicas": 0, "cooldownPeriod": 0}
    ),
    "a grace period equal to the longest task": pool(terminationGracePeriodSeconds=900, maxTaskDurationSeconds=900),
    "numeric and decimal quantities": pool(
        resources={"requests": {"cpu": 0.5, "memory": "1.5Gi"}, "limits": {"cpu": 2, "memory": 2147483648}}
    ),
    "a request equal to its limit in other units": pool(
        resources={"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    ),
    "scheduling fields": pool(
        nodeSelector={"disk": "ssd"}, tolerations=[{"key": "k", "operator": "Exists"}], affinity={}
    ),
    "poolDefaults changed for every pool": {
        "poolDefaults": {"concurrency": 3, "autoscaling": {"maxReplicas": 6, "scaleDown": {"podsPerPeriod": 2}}}
    },
    "a profile with numbers": profile(cpu=2, memory=1073741824),
    "a profile with every field": profile(
        cpu="500m",
        memory="512Mi",
        ephemeralStorage="10Gi",
        gpu={"count": 2, "resource": "amd.com/gpu"},
        nodeSelector={"pool": "gpu"},
        tolerations=[{"key": "g", "operator": "Exists"}],
        priorityClassName="high",
        timeoutSeconds=60,
    ),
    "a GPU count of zero with no resource": profile(gpu={"count": 0}),
    "a GPU count of zero with an empty resource": profile(gpu={"count": 0, "resource": ""}),
    "GPU resources of other vendors": profile(gpu={"count": 1, "resource": "gpu.intel.com/i915"}),
    "small positive profile quantities": profile(cpu="0.1", memory="0.5Gi", ephemeralStorage="1m"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_pools_and_profiles_are_refused_by_the_chart_and_by_the_package(case: str, package_load) -> None:
    values, where = BAD[case]
    with pytest.raises(RenderError) as chart:
        render_chart(values, show_only=["templates/configmap-platform.yaml"])
    top = next(iter(values))
    assert top in str(chart.value), str(chart.value)
    with pytest.raises(PlatformError) as package:
        package_load(values)
    assert where in str(package.value), str(package.value)


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_pools_and_profiles_are_taken_by_the_chart_and_by_the_package(case: str, package_load) -> None:
    values = GOOD[case]
    rendered = render_chart(values, show_only=["templates/configmap-platform.yaml"])
    from_chart = parse_platform(yaml.safe_load(rendered[0]["data"]["platform.yaml"]), Path("platform.yaml"))
    from_values = package_load(values)
    assert [p.model_dump() for p in from_chart.pools] == [p.model_dump() for p in from_values.pools]
    assert {k: v.model_dump() for k, v in from_chart.profiles.items()} == {
        k: v.model_dump() for k, v in from_values.profiles.items()
    }


def flat(node: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a nested mapping by its dotted path (an empty mapping is a leaf)."""
    if isinstance(node, dict) and node:
        return {k: v for key, value in node.items() for k, v in flat(value, f"{path}.{key}" if path else key).items()}
    return {path: node}


def test_the_charts_pool_defaults_are_the_models_defaults_field_by_field() -> None:
    model = Pool(name="x", queues=["x"]).model_dump(by_alias=True, exclude={"name", "queues"})
    assert flat(VALUES["poolDefaults"]) == flat(model)


def test_the_platform_configmap_holds_the_merged_pools_the_package_computes(package_load) -> None:
    values = {
        "poolDefaults": {
            "concurrency": 3,
            "terminationGracePeriodSeconds": 900,
            "nodeSelector": {"disk": "ssd"},
            "autoscaling": {"maxReplicas": 7, "scaleDown": {"podsPerPeriod": 2}},
        },
        "pools": [
            {"name": "a", "queues": ["a"]},
            {
                "name": "b",
                "queues": ["b"],
                "concurrency": 1,
                "terminationGracePeriodSeconds": 0,
                "nodeSelector": {"zone": "z1"},
                "autoscaling": {"enabled": False, "minReplicas": 0, "scaleDown": {"periodSeconds": 30}},
            },
        ],
    }
    rendered = render_chart(values, show_only=["templates/configmap-platform.yaml"])
    pools = yaml.safe_load(rendered[0]["data"]["platform.yaml"])["pools"]
    # every field is there, merged: the pool's own value wins (0 and false too), maps merge key by key
    a, b = pools
    assert set(a) == set(VALUES["poolDefaults"]) | {"name", "queues"}
    assert (a["concurrency"], a["terminationGracePeriodSeconds"], a["nodeSelector"]) == (3, 900, {"disk": "ssd"})
    assert a["autoscaling"]["maxReplicas"] == 7 and a["autoscaling"]["scaleDown"]["podsPerPeriod"] == 2
    assert (b["concurrency"], b["terminationGracePeriodSeconds"]) == (1, 0)
    assert b["nodeSelector"] == {"disk": "ssd", "zone": "z1"}
    assert (b["autoscaling"]["enabled"], b["autoscaling"]["minReplicas"], b["autoscaling"]["maxReplicas"]) == (
        False,
        0,
        7,
    )
    assert b["autoscaling"]["scaleDown"] == {"stabilizationWindowSeconds": 300, "podsPerPeriod": 2, "periodSeconds": 30}
    from_chart = parse_platform({"pools": pools, "profiles": VALUES["profiles"]}, Path("platform.yaml"))
    assert [p.model_dump() for p in from_chart.pools] == [p.model_dump() for p in package_load(values).pools]


def test_every_pool_field_the_chart_reads_comes_from_pool_defaults() -> None:
    """Workers, ScaledObjects and [core] parallelism read the merged pool."""
    values = {
        "poolDefaults": {
            "concurrency": 3,
            "terminationGracePeriodSeconds": 900,
            "autoscaling": {"minReplicas": 2, "maxReplicas": 7, "pollingInterval": 20, "cooldownPeriod": 60},
        },
        "pools": [{"name": "p", "queues": ["q"]}],
    }
    docs = render_chart(values)
    spec = get(docs, "Deployment", "sluice-worker-p")["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"][5:7] == ["--concurrency", "3"]
    assert spec["terminationGracePeriodSeconds"] == 900
    scaled = get(docs, "ScaledObject", "sluice-worker-p")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (2, 7)
    assert (scaled["pollingInterval"], scaled["cooldownPeriod"]) == (20, 60)
    assert "COUNT(*)::decimal / 3" in scaled["triggers"][0]["metadata"]["query"]
    scheduler = get(docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(scheduler)["AIRFLOW__CORE__PARALLELISM"] == str(7 * 3 + 16)


def test_notes_show_the_merged_pool() -> None:
    from tests.chart.render import render_notes

    values = {"poolDefaults": {"concurrency": 3, "autoscaling": {"maxReplicas": 7}}, "pools": [P]}
    assert "- p: queues q; concurrency 3; replicas 1..7" in render_notes(values)


def test_the_pool_defaults_schema_is_the_pool_schema_without_name_and_queues() -> None:
    """poolDefaults takes exactly the fields a pool takes (besides its name and queues), with the same types;
    it also requires them (a `--set poolDefaults.x=null` would leave pools without the field)."""
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    item = schema["pools"]["items"]["properties"]
    defaults = schema["poolDefaults"]["properties"]

    def shape(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: shape(v) for k, v in node.items() if k not in ("description", "required")}
        return [shape(v) for v in node] if isinstance(node, list) else node

    assert shape(defaults) == shape({k: v for k, v in item.items() if k not in ("name", "queues")})


def test_the_chart_docs_show_every_pool_default() -> None:
    """docs/chart.md's values table (generated from the schema and values.yaml) gives each per-pool default."""
    import json
    import re

    doc = (CHART.parents[1] / "docs" / "chart.md").read_text()
    rows = {
        cells[1].strip("` "): cells[3].strip()
        for cells in (re.split(r"(?<!\\)\|", line) for line in doc.splitlines())
        if len(cells) > 4 and cells[1].strip().startswith("`poolDefaults.")
    }
    assert {path: rows.get(f"poolDefaults.{path}") for path in flat(VALUES["poolDefaults"])} == {
        path: f"`{json.dumps(value)}`" for path, value in flat(VALUES["poolDefaults"]).items()
    }


def test_on_a_laptop_the_package_sees_the_pools_the_chart_renders(default_docs, monkeypatch) -> None:
    """No SLUICE_PLATFORM_FILE: the package reads the chart's own values.yaml, poolDefaults merged."""
    for name in ("SLUICE_PLATFORM_FILE", "SLUICE_LAUNCHER", "SLUICE_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    rendered = yaml.safe_load(get(default_docs, "ConfigMap", "sluice-platform")["data"]["platform.yaml"])
    from_chart = parse_platform(rendered, Path("platform.yaml"))
    assert [p.model_dump() for p in load_platform().pools] == [p.model_dump() for p in from_chart.pools]
