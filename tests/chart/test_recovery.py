"""Recovery timeouts and measured tuning: one set in every Airflow container, and the same on the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from sluice.stack.config import RECOVERY_KEYS, TUNING_KEYS, recovery_settings, tuning_settings
from sluice.worker import dag_cache, exit_wakeup, start_heartbeat

from tests.chart.render import CHART, RenderError, containers, env_of, pod_specs, render_chart


def airflow_envs(docs):
    for _, spec in pod_specs(docs):
        for container in containers(spec):
            if container["image"].startswith("ghcr.io/sluice-ml/airflow:"):
                yield env_of(container)


def test_every_airflow_container_gets_the_recovery_timeouts() -> None:
    docs = render_chart({"recovery": {"taskInstanceHeartbeatTimeout": 90, "taskQueuedTimeout": 900}})
    envs = list(airflow_envs(docs))
    assert envs
    for env in envs:
        assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "90"
        assert env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] == "900"
        assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"] == "30"


def test_the_local_stack_uses_the_charts_default_timeouts() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["recovery"]
    settings = recovery_settings()
    assert {key: int(settings[env]) for key, env in RECOVERY_KEYS.items()} == values


@pytest.mark.parametrize("key", sorted(RECOVERY_KEYS))
def test_a_zero_timeout_is_refused_naming_the_field(key: str) -> None:
    with pytest.raises(RenderError, match=f"recovery.*{key}|{key}.*minimum"):
        render_chart({"recovery": {key: 0}}, show_only=["templates/scheduler.yaml"])


def test_every_airflow_container_gets_the_measured_tuning() -> None:
    for env in airflow_envs(render_chart({})):
        assert env["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] == "5"
        assert env["AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY"] == "0"
        assert env["AIRFLOW__CELERY__TASK_TRACK_STARTED"] == "false"


def test_the_local_stacks_sluice_tuning_is_the_charts() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["tuning"]
    settings = tuning_settings("sluice")
    assert int(settings["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"]) == values["minHeartbeatInterval"]
    assert int(settings["AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY"]) == values["maxTisPerQuery"]
    assert settings["SLUICE_WORKER_PRELOAD"].split(",") == values["workerPreload"]
    switches = (dag_cache, exit_wakeup, start_heartbeat)
    assert {settings[switch.ENV] for switch in switches} == {"true"}, "as the chart renders them"
    assert dag_cache.enabled(settings[dag_cache.ENV]) is values["workerDagCache"] is True
    assert exit_wakeup.enabled(settings[exit_wakeup.ENV]) is values["workerExitWakeup"] is True
    assert start_heartbeat.enabled(settings[start_heartbeat.ENV]) is values["workerStartHeartbeat"] is True
    assert settings["AIRFLOW__CELERY__TASK_TRACK_STARTED"] == "false" and values["taskTrackStarted"] is False
    assert set(TUNING_KEYS) == set(values)
    assert tuning_settings("stock") == {}


def test_workers_preload_the_kubernetes_launcher_when_steps_run_as_pods() -> None:
    preload = {env["SLUICE_WORKER_PRELOAD"] for env in airflow_envs(render_chart({}))}
    assert len(preload) == 1
    modules = preload.pop().split(",")
    assert "sluice.operators" in modules
    assert modules[-2:] == ["sluice.launchers.kubernetes", "airflow.providers.cncf.kubernetes.operators.pod"]


# What a worker of a chart with steps as local processes loads: the rendered preload list, then what a step's
# task does (the launcher the platform names, sizing the step from its profile). Prints the kubernetes modules loaded.
LOCAL_WORKER = """
import importlib, json, sys
for name in filter(None, sys.argv[1].split(",")):
    importlib.import_module(name)
from sluice.launchers import launcher_for
from sluice.launchers.local import LocalLauncher, cpu_count_for, memory_bytes_for
from sluice.platform import current_platform
platform = current_platform()
assert isinstance(launcher_for(platform), LocalLauncher), platform.launcher
for profile in platform.profiles.values():
    cpu_count_for(profile.cpu), memory_bytes_for(profile.memory)
print(json.dumps(sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes."))))
"""


def test_local_launcher_workers_do_not_load_the_kubernetes_client() -> None:
    preload = {env["SLUICE_WORKER_PRELOAD"] for env in airflow_envs(render_chart({"launcher": {"type": "local"}}))}
    assert len(preload) == 1
    env = {**os.environ, "SLUICE_LAUNCHER": "local"}
    env.pop("SLUICE_PLATFORM_FILE", None)
    proc = subprocess.run(
        [sys.executable, "-c", LOCAL_WORKER, preload.pop()], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert loaded == [], f"a local-launcher worker loaded the kubernetes client: {loaded[:5]}"


def test_an_empty_preload_list_turns_preloading_off() -> None:
    for env in airflow_envs(render_chart({"tuning": {"workerPreload": []}})):
        assert env["SLUICE_WORKER_PRELOAD"] == ""


def test_a_preload_entry_that_is_not_a_module_name_is_refused() -> None:
    with pytest.raises(RenderError, match="workerPreload"):
        render_chart({"tuning": {"workerPreload": ["sluice operators"]}}, show_only=["templates/scheduler.yaml"])


WORKER_SWITCHES = [
    ("workerDagCache", dag_cache.ENV),
    ("workerExitWakeup", exit_wakeup.ENV),
    ("workerStartHeartbeat", start_heartbeat.ENV),
    ("taskTrackStarted", "AIRFLOW__CELERY__TASK_TRACK_STARTED"),
]


@pytest.mark.parametrize(("key", "env_name"), WORKER_SWITCHES)
@pytest.mark.parametrize("value", [True, False])
def test_a_worker_switch_reaches_every_airflow_container(key: str, env_name: str, value: bool) -> None:
    envs = list(airflow_envs(render_chart({"tuning": {key: value}})))
    assert envs
    assert {env[env_name] for env in envs} == {str(value).lower()}


@pytest.mark.parametrize(("key", "env_name"), WORKER_SWITCHES)
def test_a_worker_switch_that_is_not_a_boolean_is_refused(key: str, env_name: str) -> None:
    with pytest.raises(RenderError, match=key):
        render_chart({"tuning": {key: "sometimes"}}, show_only=["templates/scheduler.yaml"])
