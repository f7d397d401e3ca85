"""Cluster policy: CeleryKubernetesExecutor routing on Airflow 3, and queue checks at DAG import.

Enabled by an ``airflow_local_settings.py`` that imports ``task_policy`` (the chart mounts one; the
``sluice`` CLI writes one into its local AIRFLOW_HOME).
"""

from __future__ import annotations

from typing import Any

from sluice.platform import Platform, current_platform

KUBERNETES_EXECUTOR = "KubernetesExecutor"
CELERY_EXECUTOR = "CeleryExecutor"


def configured_executors() -> list[str]:
    """Executor names from ``[core] executor``: aliases or the class name at the end of a module path."""
    from airflow.configuration import conf

    names = []
    for entry in conf.get("core", "executor", fallback="").split(","):
        entry = entry.strip()
        if entry:
            names.append(entry.split(":")[-1].rsplit(".", 1)[-1])
    return names


def mapped_keys(task: Any) -> set[str]:
    """Keyword arguments a mapped task expands (known at parse time only for literal lists)."""
    value = getattr(getattr(task, "expand_input", None), "value", None)
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list | tuple):
        return {key for item in value if isinstance(item, dict) for key in item}
    return set()


def queue_problem(task: Any, platform: Platform, executors: list[str]) -> str | None:
    """Why this task's queue can never run, or None; shared by the policy and ``sluice check``."""
    queue = task.queue
    where = f"task {task.dag_id}.{task.task_id}"
    if "queue" in mapped_keys(task):
        return (
            f"{where}: 'queue' is mapped (expand); Airflow routes every instance of a mapped task to the one "
            "queue set in .partial(), before it expands. Set queue in .partial() and use one mapped task per "
            "pool; the step's 'profile' may be mapped"
        )
    if queue == platform.routing.kubernetes_queue:
        if CELERY_EXECUTOR in executors and KUBERNETES_EXECUTOR not in executors:
            return (
                f"{where}: queue {queue!r} routes to the KubernetesExecutor, which is not configured here "
                f"(executor = {','.join(executors)}); set a pool's queue instead, or add KubernetesExecutor"
            )
        return None
    if platform.pool_for_queue(queue) is None:
        served = ", ".join(f"{p.name} ({', '.join(p.queues)})" for p in platform.pools)
        return (
            f"{where}: queue {queue!r} is served by no pool; pools that exist: {served}; "
            f"or use queue {platform.routing.kubernetes_queue!r} for the KubernetesExecutor. "
            "Set the task's queue to one of these, or add a pool for it in the chart's values"
        )
    return None


def task_policy(task: Any) -> None:
    from airflow.exceptions import AirflowClusterPolicyViolation

    platform = current_platform()
    executors = configured_executors()
    problem = queue_problem(task, platform, executors)
    if problem:
        raise AirflowClusterPolicyViolation(problem)
    routed = task.queue == platform.routing.kubernetes_queue
    # Route only to a configured executor: Airflow validates executors before policies run, so a
    # route to a missing one would leave the task scheduled forever. An explicit executor wins.
    if routed and task.executor is None and KUBERNETES_EXECUTOR in executors:
        task.executor = KUBERNETES_EXECUTOR
