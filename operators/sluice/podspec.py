"""``sluice pod-spec``: the exact pod the Kubernetes launcher would submit for a step, built offline.

Values only known at run time are shown as such: upstream outputs as ``<xcom:TASK.OUTPUT>``, the run id
as ``<run_id>``; templated params are rendered with the DAG's default params.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sluice.platform import Platform, current_platform

RUN_ID = "<run_id>"


def _placeholder_inputs(task: Any) -> dict[str, str]:
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    inputs = {}
    for name, value in task.inputs.items():
        if isinstance(value, PlainXComArg):
            inputs[name] = f"<xcom:{value.operator.task_id}.{value.key}>"
        else:
            inputs[name] = str(value)
    return inputs


def pod_manifest(dag_id: str, task_id: str, dags_folder: Path, platform: Platform | None = None) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    from sluice.launchers.kubernetes import pod_operator
    from sluice.operators import MLStepOperator
    from sluice.runs import load_dag

    platform = platform or current_platform()
    dag = load_dag(dag_id, dags_folder)
    if task_id not in dag.task_dict:
        raise KeyError(f"DAG {dag_id!r} has no task {task_id!r}; tasks: {', '.join(sorted(dag.task_dict))}")
    task = dag.task_dict[task_id]
    if not isinstance(task, MLStepOperator):
        raise TypeError(f"task {task_id!r} is a {type(task).__name__}, not an MLStepOperator: it launches no step pod")
    step_params = task.render_template(task.step_params, {"params": dag.params.dump()})
    original = task.step_params
    try:
        task.step_params = step_params
        step = task.build_step_run(platform, dag_id, RUN_ID, try_number=1, inputs=_placeholder_inputs(task))
    finally:
        task.step_params = original
    # The labels the provider derives from the task context (dag/task/run/try), as on a real run.
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=RUN_ID, try_number=1, map_index=-1)
    context = {"ti": ti, "run_id": RUN_ID, "dag": dag}
    pod = pod_operator(step, platform).build_pod_request_obj(context, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)
