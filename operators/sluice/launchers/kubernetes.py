"""Run a step as a pod through the cncf.kubernetes provider's KubernetesPodOperator machinery.

The provider does pod creation, log streaming, start-up timeouts, ImagePullBackOff detection,
re-attachment on retry (pods are labelled with dag/task/run/try and found again by label) and cleanup;
this module only turns a Sluice step + profile into the operator's arguments and its failures into
messages a DAG author can act on.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value
from kubernetes.client import models as k8s

from sluice import compat
from sluice.code_identity import CodeIdentity, of_image
from sluice.contract import EXIT_USAGE
from sluice.launchers.base import FailureKind, LaunchResult, StepFailed, StepLog, StepRun
from sluice.platform import Platform, Profile

STEP_UID = 10001


def pod_name(step: StepRun) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", f"{step.dag_id}-{step.task_id}".lower()).strip("-")
    return base[:50].rstrip("-") or "step"


def resources(profile: Profile) -> k8s.V1ResourceRequirements:
    """Requests = limits (Guaranteed QoS): a step gets exactly what its profile says, as locally."""
    amounts: dict[str, str] = {"cpu": profile.cpu, "memory": profile.memory}
    if profile.ephemeral_storage:
        amounts["ephemeral-storage"] = profile.ephemeral_storage
    limits = dict(amounts)
    if profile.gpu.count and profile.gpu.resource:
        limits[profile.gpu.resource] = str(profile.gpu.count)
    return k8s.V1ResourceRequirements(requests=amounts, limits=limits)


def tolerations(profile: Profile) -> list[k8s.V1Toleration]:
    return [
        k8s.V1Toleration(
            key=t.get("key"),
            operator=t.get("operator"),
            value=t.get("value"),
            effect=t.get("effect"),
            toleration_seconds=t.get("tolerationSeconds"),
        )
        for t in profile.tolerations
    ]


def labels(step: StepRun) -> dict[str, str]:
    """Sluice's own labels. The provider adds dag_id/task_id/run_id/try_number/map_index from the task
    context itself, and finds a lost worker's pod again by those minus try_number: setting them here too
    would pin the search to one try."""
    return {
        "app.kubernetes.io/name": "sluice-step",
        "app.kubernetes.io/managed-by": "sluice",
        # The provider's rule, as for its own labels: a name that is not a valid label value is cut and given a
        # hash of the whole name, so two profiles never share a label.
        "sluice.io/profile": make_safe_label_value(step.profile_name),
        **step.labels,
    }


def pod_operator(step: StepRun, platform: Platform) -> Any:
    """The KubernetesPodOperator that runs this step (built, not executed: also used offline)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    launcher = platform.launcher
    profile = step.profile
    env_from = (
        [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=platform.artifacts.secret_name))]
        if platform.artifacts.secret_name
        else None
    )
    return KubernetesPodOperator(
        task_id=f"{step.task_id}.pod",
        name=pod_name(step),
        random_name_suffix=True,
        namespace=launcher.namespace or None,
        image=step.image,
        image_pull_policy=step.image_pull_policy,
        cmds=step.command[:1],
        arguments=step.command[1:],
        env_vars=dict(sorted(step.env.items())),
        env_from=env_from,
        labels=labels(step),
        container_resources=resources(profile),
        node_selector=profile.node_selector or None,
        tolerations=tolerations(profile) or None,
        priority_class_name=profile.priority_class_name,
        service_account_name=launcher.service_account_name or None,
        automount_service_account_token=False,
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=STEP_UID,
            run_as_group=STEP_UID,
            fs_group=STEP_UID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        volumes=[k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())],
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
        active_deadline_seconds=profile.timeout_seconds,
        startup_timeout_seconds=launcher.startup_timeout_seconds,
        schedule_timeout_seconds=launcher.startup_timeout_seconds,
        on_finish_action=launcher.on_finish_action,
        durable=True,
        get_logs=True,
        log_events_on_failure=True,
        # Deferrable: the pod is watched by the triggerer, freeing the worker slot; the provider resumes
        # the task's own operator (MLStepOperator.trigger_reentry), which hands back to resume() below.
        deferrable=launcher.deferrable,
        do_xcom_push=False,
        in_cluster=None,
    )


def step_pod(step: StepRun, platform: Platform) -> Any:
    """The pod (a ``V1Pod``) this launcher would submit for one try of the step, built offline: what
    ``sluice pod-spec`` prints and what the container launcher runs. The provider derives its labels
    (dag/task/run/try/map index) from the task context; this gives it the same from the step."""
    from types import SimpleNamespace

    ti = SimpleNamespace(
        dag_id=step.dag_id,
        task_id=step.task_id,
        run_id=step.run_id,
        try_number=step.try_number,
        map_index=step.map_index,
    )
    context = {"ti": ti, "run_id": step.run_id, "dag": SimpleNamespace(dag_id=step.dag_id)}
    return compat.pod_request(pod_operator(step, platform), context)


def _remote_pod(operator: Any) -> Any:
    try:
        return compat.read_pod(operator)  # None where the provider's read_pod is not as tested
    except Exception:
        return None


def pending_reason(operator: Any) -> str:
    """Why the pod did not start, from its conditions and container states (best effort)."""
    remote = _remote_pod(operator)
    if remote is None:
        return ""
    reasons = [
        f"{c.reason}: {c.message}" for c in (remote.status.conditions or []) if c.status == "False" and c.message
    ]
    for status in remote.status.container_statuses or []:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason:
            reasons.append(f"{waiting.reason}: {waiting.message or status.image}")
    return "; ".join(reasons)


def terminated(operator: Any) -> tuple[int | None, str | None]:
    """The step container's exit code and reason (``OOMKilled``, ``Error``) once the pod ended (best effort)."""
    remote = _remote_pod(operator)
    for status in (remote.status.container_statuses or []) if remote is not None else []:
        ended = status.state.terminated if status.state else None
        if ended is not None:
            return ended.exit_code, ended.reason
    return None, None


IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def not_run_reason(exc: BaseException) -> str | None:
    """Why the Kubernetes API never ran the pod, from the kubernetes client's exception: the API refused a request
    (``ApiException``: its status and its Status body's message, e.g. ``403 Forbidden: pods is forbidden: User "..."
    cannot create resource "pods" ...``; the exception's own text starts with just ``(403)``), or the client has no
    credentials to ask with (``ConfigException``: no token mounted). None for any other exception."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(exc, ConfigException):
        return f"no Kubernetes API credentials ({exc}); does the ServiceAccount mount its token?"
    if not isinstance(exc, ApiException):
        return None
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message", "") if isinstance(body, dict) else ""
    said = f"{exc.status} {exc.reason}".strip()
    return f"the Kubernetes API answered {said}" + (f": {message}" if message else "")


class KubernetesLauncher:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._operator: Any = None
        self._killed = False  # on_kill ran: the pod's failure is the kill's doing (our flag, not the provider's)

    def code_identity(self, step: StepRun, cache_version: str | None) -> CodeIdentity:
        """The image: its digest, or its tag with the step's explicit cache_version; else no caching."""
        return of_image(step.image, cache_version)

    def run(self, step: StepRun, log: StepLog, context: Any | None = None) -> LaunchResult:
        if context is None:
            raise StepFailed("the kubernetes launcher runs inside an Airflow task (it needs the task context)")
        self._operator = operator = pod_operator(step, self.platform)
        log.info(
            "kubernetes launcher: %s in pod %s-* (namespace %s, profile %s)",
            step.image,
            operator.name,
            operator.namespace or "in-cluster default",
            step.profile_name,
        )
        return self._watch(step, lambda: compat.run_pod(operator, context))

    def resume(self, step: StepRun, log: StepLog, context: Any, event: dict[str, Any]) -> LaunchResult:
        """Finish a deferred step pod: the trigger reported ``event``; the provider reads logs and cleans up."""
        self._operator = operator = pod_operator(step, self.platform)
        log.info("kubernetes launcher: resuming step pod %s (%s)", event.get("name"), event.get("status"))
        return self._watch(step, lambda: compat.resume_pod(operator, context, event))

    def _watch(self, step: StepRun, call: Any) -> LaunchResult:
        """Run the provider's call; its exceptions become a result. A pod's peak memory is the node's metrics,
        not the launcher's to read, so results carry none."""
        from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException
        from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException

        operator = self._operator
        try:
            call()
        except Exception as exc:  # TaskDeferred is a BaseException: a deferral passes through untouched
            # The provider's cleanup may raise "returned a failure" over the start-up error: find the cause.
            launch = next(
                (e for e in _chain(exc) if isinstance(e, PodLaunchFailedException | PodLaunchTimeoutException)), None
            )
            if launch is not None:
                reason = pending_reason(operator)
                kind = FailureKind.IMAGE_MISSING if any(r in reason for r in IMAGE_REASONS) else FailureKind.START
                message = f"step pod for {step.task_id} did not start: {str(launch).splitlines()[0]}"
                return LaunchResult(None, kind, message + (f" ({reason})" if reason else ""))
            if self._killed:
                message = f"step pod for {step.task_id} was deleted because the task was killed"
                return LaunchResult(None, FailureKind.KILLED, message)
            code, why = terminated(operator)
            not_run = next((r for r in map(not_run_reason, _chain(exc)) if r), None)
            if code is None and not_run is not None:  # the API refused the pod (RBAC, admission, quota...)
                return LaunchResult(None, FailureKind.START, f"step pod for {step.task_id} not run: {not_run}")
            kind = (
                FailureKind.OUT_OF_MEMORY
                if why == "OOMKilled"
                else FailureKind.UNKNOWN_STEP
                if code == EXIT_USAGE
                else FailureKind.EXIT
            )
            return LaunchResult(code, kind, f"step pod for {step.task_id} failed: {str(exc).splitlines()[0]}")
        return LaunchResult(0)

    def on_kill(self) -> None:
        self._killed = True
        if self._operator is not None:
            self._operator.on_kill()
