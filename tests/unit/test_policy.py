"""The cluster policy: CeleryKubernetesExecutor routing on Airflow 3 and unserved-queue refusal."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from sluice import policy


def make_task(queue: str, executor: str | None = None) -> EmptyOperator:
    with DAG("policy_probe", schedule=None, start_date=datetime(2026, 1, 1)):
        return EmptyOperator(task_id="t", queue=queue, executor=executor)


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch):
    def set_to(value: str) -> None:
        monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", value)

    return set_to


def test_kubernetes_queue_routes_to_the_kubernetes_executor(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    task = make_task("kubernetes")
    policy.task_policy(task)
    assert task.executor == "KubernetesExecutor"


def test_celery_queues_keep_the_default_executor(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    task = make_task("highmem")
    policy.task_policy(task)
    assert task.executor is None


def test_an_explicit_executor_is_respected(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    task = make_task("kubernetes", executor="CeleryExecutor")
    policy.task_policy(task)
    assert task.executor == "CeleryExecutor"


def test_executor_given_by_module_path_is_recognised(executors) -> None:
    executors("CeleryExecutor,airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor")
    task = make_task("kubernetes")
    policy.task_policy(task)
    assert task.executor == "KubernetesExecutor"


def test_unserved_queue_is_refused_naming_the_pools(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    with pytest.raises(AirflowClusterPolicyViolation, match=r"queue 'gpus' is served by no pool; .*gpu \(gpu\)"):
        policy.task_policy(make_task("gpus"))


def test_kubernetes_queue_without_the_kubernetes_executor_is_refused(executors) -> None:
    executors("CeleryExecutor")
    with pytest.raises(AirflowClusterPolicyViolation, match="KubernetesExecutor, which is not configured"):
        policy.task_policy(make_task("kubernetes"))


def mapped_step(**partial: object):
    """A mapped MLStepOperator as the policy sees it at import: .partial() kwargs plus an expand input."""
    from sluice.operators import MLStepOperator

    expand = partial.pop("expand", None)
    expand_kwargs = partial.pop("expand_kwargs", None)
    with DAG("policy_probe", schedule=None, start_date=datetime(2026, 1, 1)):
        started = MLStepOperator.partial(task_id="train", image="ml-steps", command=["sluice-step", "train"], **partial)
        if expand_kwargs is not None:
            return started.expand_kwargs(expand_kwargs)
        return started.expand(**(expand or {"step_params": [{}]}))


def test_a_mapped_steps_unknown_partial_profile_is_refused(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    with pytest.raises(AirflowClusterPolicyViolation, match=r"unknown profile 'huge' \(from \.partial\(\)\)"):
        policy.task_policy(mapped_step(profile="huge"))


def test_a_mapped_steps_unknown_literal_expand_profile_is_refused(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    with pytest.raises(AirflowClusterPolicyViolation, match=r"unknown profile 'huge' \(from \.expand\("):
        policy.task_policy(mapped_step(expand={"profile": ["default", "huge"]}))


def test_a_mapped_steps_unknown_literal_expand_kwargs_profile_is_refused_naming_the_entry(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    entries = [{"profile": "highmem"}, {"profile": "huge"}]
    with pytest.raises(
        AirflowClusterPolicyViolation, match=r"unknown profile 'huge' \(from \.expand_kwargs\(\) entry 1\)"
    ):
        policy.task_policy(mapped_step(expand_kwargs=entries))
