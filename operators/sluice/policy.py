"""Cluster policy: CeleryKubernetesExecutor routing on Airflow 3, and queue/profile/step-spec checks at DAG import.

Enabled by an ``airflow_local_settings.py`` that imports ``task_policy`` (the chart mounts one; the
``sluice`` CLI writes one into its local AIRFLOW_HOME).
"""

from __future__ import annotations

from typing import Any

from sluice import compat
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
    value = compat.expand_input_value(task)
    if isinstance(value, dict):
        return set(value)
    if isinstance(value, list | tuple):
        return {key for item in value if isinstance(item, dict) for key in item}
    return set()


def literal_profiles(task: Any) -> list[tuple[Any, str]]:
    """(profile, where it was given) for each profile of a mapped task known at import: the one
    ``.partial()`` gives (or ``default``), and literal values mapped by ``.expand()`` / ``.expand_kwargs()``.
    A profile mapped from an upstream task's output is known only at run time."""
    partial = task.partial_kwargs
    given = [(partial.get("profile", "default"), ".partial()" if "profile" in partial else "the default")]
    value = compat.expand_input_value(task)
    if isinstance(value, dict) and "profile" in value:
        mapped = value["profile"]
        return [(p, ".expand(profile=[...])") for p in mapped] if isinstance(mapped, list | tuple) else []
    if isinstance(value, list | tuple):
        given += [
            (item["profile"], f".expand_kwargs() entry {i}")
            for i, item in enumerate(value)
            if isinstance(item, dict) and "profile" in item
        ]
    return given


def profile_problem(task: Any, platform: Platform) -> str | None:
    """Why a mapped MLStepOperator names a profile that does not exist, or None.

    An unmapped step checks its profile when it is built (``MLStepOperator.__init__``); a mapped one is built
    only when it runs, so its ``.partial()`` and literal ``.expand()`` values are checked here, at import.
    """
    from sluice.operators import MLStepOperator, is_mapped_step

    if isinstance(task, MLStepOperator) or not is_mapped_step(task):
        return None
    for profile, where in literal_profiles(task):
        if isinstance(profile, str) and profile not in platform.profiles:
            return (
                f"task {task.dag_id}.{task.task_id}: unknown profile {profile!r} (from {where}); "
                f"profiles that exist: {', '.join(sorted(platform.profiles))}"
            )
    return None


def step_problem(task: Any, platform: Platform) -> str | None:
    """Why a mapped MLStepOperator's arguments known at import break its step's spec (``sluice.specs``), or None.

    An unmapped step checks its spec when it is built (``MLStepOperator.__init__``); a mapped one is built only
    when it runs, so its ``.partial()`` and literal ``.expand()`` values are checked here.
    """
    from sluice.operators import MLStepOperator, is_mapped_step
    from sluice.specs import mapped_step_problem

    if isinstance(task, MLStepOperator) or not is_mapped_step(task):
        return None
    return mapped_step_problem(task, platform)


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


KUBERNETES_EXECUTOR_PATH = "airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor"


def kubernetes_executor_spellings() -> set[str]:
    """Every ``executor`` a task may write that Airflow resolves to the configured KubernetesExecutor.

    ``[core] executor`` entries are ``Name``, ``module.path`` or ``alias:Name-or-path`` (team sections
    after ``;``), and a task's executor is looked up by alias, then module path, then class name
    (airflow/executors/executor_loader.py); this applies the same rules. Empty when it is not configured.
    """
    from airflow.configuration import conf

    entries: list[tuple[str, str]] = []  # (alias or "", module path)
    for section in conf.get("core", "executor", fallback="").split(";"):
        for entry in section.split("=")[-1].split(","):
            alias, _, target = entry.strip().rpartition(":")
            if target:
                path = KUBERNETES_EXECUTOR_PATH if target == KUBERNETES_EXECUTOR else target
                entries.append((alias or (target if "." not in target else ""), path))
    aliases = {alias: path for alias, path in entries if alias}
    paths = {path for _, path in entries}
    classes = {path.rsplit(".", 1)[-1]: path for _, path in entries}
    return {
        name
        for name in {*aliases, *paths, *classes}
        if (aliases.get(name) or (name if name in paths else None) or classes.get(name)) == KUBERNETES_EXECUTOR_PATH
    }


def task_policy(task: Any) -> None:
    from airflow.exceptions import AirflowClusterPolicyViolation

    platform = current_platform()
    executors = configured_executors()
    problem = queue_problem(task, platform, executors) or profile_problem(task, platform)
    problem = problem or step_problem(task, platform)
    if problem:
        raise AirflowClusterPolicyViolation(problem)
    routed = task.queue == platform.routing.kubernetes_queue
    # Route only to a configured executor: Airflow validates executors before policies run, so a
    # route to a missing one would leave the task scheduled forever. An explicit executor wins.
    if routed and task.executor is None and KUBERNETES_EXECUTOR in executors:
        task.executor = KUBERNETES_EXECUTOR
    # Airflow stores a task's executor as written; the pool-load query (KEDA) knows one spelling, so a
    # module path or custom alias of the KubernetesExecutor would count as Celery load. Same executor,
    # one spelling: the class name, which Airflow resolves to it whatever alias it is configured under.
    spellings = kubernetes_executor_spellings() if task.executor else set()
    if task.executor in spellings and KUBERNETES_EXECUTOR in spellings:
        task.executor = KUBERNETES_EXECUTOR
