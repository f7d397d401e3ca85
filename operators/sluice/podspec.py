"""``sluice pod-spec``: the exact pod the Kubernetes launcher would submit for a step, built offline.

Values only known at run time are shown as such: upstream outputs as ``<xcom:TASK.OUTPUT>``, the run id
as ``<run_id>``; templated params are rendered with the DAG's default params.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluice.platform import Platform, current_platform
from sluice.specs import unchecked

RUN_ID = "<run_id>"


def _placeholder(value: Any) -> Any:
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    if isinstance(value, PlainXComArg):
        return f"<xcom:{value.operator.task_id}.{value.key}>"
    if isinstance(value, list | tuple):
        return [_placeholder(item) for item in value]
    return str(value)


def _placeholder_inputs(task: Any) -> dict[str, Any]:
    return {name: _placeholder(value) for name, value in task.inputs.items()}


def _step_task(task: Any) -> Any:
    """The MLStepOperator behind a task; a mapped one is built from its .partial() arguments, with
    what it expands shown as ``<mapped>`` (the profile falls back to the partial's or ``default``)."""
    from sluice.operators import MLStepOperator, is_mapped_step

    if isinstance(task, MLStepOperator):
        return task
    if not is_mapped_step(task):
        raise TypeError(
            f"task {task.task_id!r} is a {type(task).__name__}, not an MLStepOperator: it launches no step pod"
        )
    own = ("image", "command", "inputs", "outputs", "step_params", "profile", "cache", "cache_version")
    kwargs = {key: value for key, value in task.partial_kwargs.items() if key in own}
    kwargs.setdefault("step_params", {"<mapped>": "expanded at run time, one set per mapped instance"})
    kwargs["inputs"] = {name: _placeholder(value) for name, value in kwargs.get("inputs", {}).items()}
    with unchecked():  # its mapped values are placeholders; the policy checked what is known of them
        return task.operator_class(task_id=task.task_id, **kwargs)  # standalone: in no DAG


def pod_manifest(dag_id: str, task_id: str, dags_folder: Path, platform: Platform | None = None) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    from sluice.launchers.kubernetes import step_pod
    from sluice.runs import load_dag

    platform = platform or current_platform()
    dag = load_dag(dag_id, dags_folder)
    if task_id not in dag.task_dict:
        raise KeyError(f"DAG {dag_id!r} has no task {task_id!r}; tasks: {', '.join(sorted(dag.task_dict))}")
    task = _step_task(dag.task_dict[task_id])
    step_params = task.render_template(task.step_params, {"params": dag.params.dump()})
    original = task.step_params
    try:
        task.step_params = step_params
        step = task.build_step_run(platform, dag_id, RUN_ID, try_number=1, inputs=_placeholder_inputs(task))
    finally:
        task.step_params = original
    pod = step_pod(step, platform)  # with the labels the provider derives from the task context, as on a run
    manifest: dict[str, Any] = ApiClient().sanitize_for_serialization(pod)
    return manifest
