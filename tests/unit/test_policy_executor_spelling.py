"""The policy stores one spelling for the KubernetesExecutor, whichever one a DAG wrote.

Airflow resolves a task's ``executor`` by alias, module path or class name and stores it as written; the
pool-load query (KEDA) recognises only ``'KubernetesExecutor'``, so any other spelling would count a
KubernetesExecutor task as Celery load and wake a worker pool for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from airflow.executors import executor_loader
from airflow.executors.executor_loader import ExecutorLoader
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from sluice import policy

PATH = "airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor"
CELERY_PATH = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"


def make_task(executor: str | None, queue: str = "default") -> EmptyOperator:
    with DAG("spelling_probe", schedule=None, start_date=datetime(2026, 1, 1)):
        return EmptyOperator(task_id="t", queue=queue, executor=executor)


def routed(executor: str | None, queue: str = "default") -> str | None:
    task = make_task(executor, queue)
    policy.task_policy(task)
    return task.executor


@pytest.fixture
def executors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``[core] executor`` per test, with Airflow's executor lookup caches emptied before and after."""

    def clear() -> None:
        executor_loader._executor_names.clear()
        for cache in (
            executor_loader._alias_to_executors_per_team,
            executor_loader._module_to_executors_per_team,
            executor_loader._classname_to_executors_per_team,
            executor_loader._team_name_to_executors,
        ):
            cache.clear()

    clear()
    yield lambda value: monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", value)
    clear()


@pytest.mark.parametrize(
    ("config", "written"),
    [
        ("CeleryExecutor,KubernetesExecutor", PATH),
        (f"CeleryExecutor,{PATH}", PATH),
        ("CeleryExecutor,k8s:KubernetesExecutor", "k8s"),
        (f"CeleryExecutor,k8s:{PATH}", "k8s"),
        (f"CeleryExecutor,k8s:{PATH}", PATH),
    ],
)
def test_every_spelling_of_the_kubernetes_executor_is_stored_as_the_alias(executors, config: str, written: str) -> None:
    executors(config)
    assert routed(written) == "KubernetesExecutor"


@pytest.mark.parametrize(
    ("config", "written"),
    [
        ("CeleryExecutor,KubernetesExecutor", PATH),
        (f"CeleryExecutor,{PATH}", PATH),
        (f"CeleryExecutor,k8s:{PATH}", "k8s"),
        # 'KubernetesExecutor' aliased to another executor: rewriting 'k8s' would reroute the task.
        (f"CeleryExecutor,KubernetesExecutor:airflow.executors.local_executor.LocalExecutor,k8s:{PATH}", "k8s"),
    ],
)
def test_the_stored_alias_names_the_same_executor_for_airflow(executors, config: str, written: str) -> None:
    """Normalising never reroutes: Airflow's own lookup resolves both spellings to one configured executor."""
    executors(config)
    assert ExecutorLoader.lookup_executor_name_by_str(routed(written)) == (
        ExecutorLoader.lookup_executor_name_by_str(written)
    )


@pytest.mark.parametrize("written", [CELERY_PATH, "CeleryExecutor", None])
def test_other_executors_are_stored_as_written(executors, written: str | None) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    assert routed(written) == written


def test_an_alias_of_another_executor_is_not_taken_for_the_kubernetes_executor(executors) -> None:
    executors(f"CeleryExecutor,KubernetesExecutor,k8s:{CELERY_PATH}")
    assert routed("k8s") == "k8s"


def test_an_explicit_module_path_on_the_kubernetes_queue_is_stored_as_the_alias(executors) -> None:
    executors("CeleryExecutor,KubernetesExecutor")
    assert routed(PATH, queue="kubernetes") == "KubernetesExecutor"
