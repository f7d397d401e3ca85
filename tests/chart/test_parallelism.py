"""[core] parallelism covers every slot the pools can offer, so no task waits `scheduled` unseen by KEDA.

Airflow 3 caps queued+running task instances per scheduler, summed over its executors, at [core] parallelism
(stock 32); the pools' KEDA query counts only queued+running ones, so a lower cap would keep pools from scaling.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.render import RenderError, containers, env_of, get, pod_specs, render_chart, render_notes

SHOW = ["templates/scheduler.yaml"]


def parallelism(values: dict[str, Any]) -> int:
    scheduler = get(render_chart(values, show_only=SHOW), "Deployment", "sluice-scheduler")
    return int(env_of(scheduler["spec"]["template"]["spec"]["containers"][0])["AIRFLOW__CORE__PARALLELISM"])


def test_the_default_covers_the_default_pools_and_the_kubernetes_executor_allowance(default_docs) -> None:
    # default 4 x 8 + highmem 2 x 2 + gpu 2 x 1 = 38 slots, + kubernetesExecutor.parallelism 16
    scheduler = get(default_docs, "Deployment", "sluice-scheduler")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(scheduler)["AIRFLOW__CORE__PARALLELISM"] == "54"


def test_only_the_scheduler_gets_it_so_a_pools_size_restarts_nothing_else(default_docs) -> None:
    """Only the scheduler's executors read [core] parallelism. In every container's env, a pool's maxReplicas would
    restart every worker (and drain it, up to its grace period) for a number no worker reads."""
    template = yaml.safe_load(get(default_docs, "ConfigMap", "sluice-platform")["data"]["pod_template.yaml"])
    specs = [*pod_specs(default_docs), ("KubernetesExecutor pod template", template["spec"])]
    setters = {
        (name, container["name"])
        for name, spec in specs
        for container in containers(spec)
        if "AIRFLOW__CORE__PARALLELISM" in env_of(container)
    }
    assert setters == {("Deployment/sluice-scheduler", "scheduler")}


def test_raising_a_pools_max_replicas_raises_it() -> None:
    pools = [{"name": "default", "queues": ["default"], "concurrency": 8, "autoscaling": {"maxReplicas": 10}}]
    assert parallelism({"pools": pools}) == 10 * 8 + 16


def test_a_pool_without_an_autoscaling_block_counts_the_default_max_replicas() -> None:
    assert parallelism({"pools": [{"name": "p", "queues": ["q"]}]}) == 4 * 8 + 16


def test_a_pool_without_autoscaling_counts_its_fixed_replicas() -> None:
    pools = [{"name": "p", "queues": ["q"], "concurrency": 4, "autoscaling": {"enabled": False, "minReplicas": 3}}]
    assert parallelism({"pools": pools}) == 3 * 4 + 16


@pytest.mark.parametrize(("replicas", "expected"), [(2, 19 + 16), (3, 13 + 16)])
def test_scheduler_replicas_share_the_pool_slots_rounding_up(replicas: int, expected: int) -> None:
    assert parallelism({"scheduler": {"replicas": replicas}}) == expected


def test_the_kubernetes_executor_allowance_comes_from_values() -> None:
    assert parallelism({"kubernetesExecutor": {"parallelism": 40}}) == 38 + 40


def test_without_the_kubernetes_executor_there_is_no_allowance() -> None:
    assert parallelism({"executor": "CeleryExecutor"}) == 38


def test_an_explicit_value_at_least_the_derived_one_is_used() -> None:
    assert parallelism({"scheduler": {"parallelism": 54}}) == 54
    assert parallelism({"scheduler": {"parallelism": 200}}) == 200


def test_an_explicit_value_below_the_derived_one_is_refused_with_both_numbers_and_the_fix() -> None:
    with pytest.raises(RenderError) as refused:
        render_chart({"scheduler": {"parallelism": 32}}, show_only=SHOW)
    message = str(refused.value)
    assert "scheduler.parallelism (32) is below the derived 54" in message
    assert "set scheduler.parallelism to 0 (derived) or at least 54" in message


def test_notes_show_the_parallelism() -> None:
    assert "[core] parallelism: 54 per scheduler" in render_notes()
