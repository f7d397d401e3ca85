"""The kubelet of the kubernetes launcher's tests, behind the mock of the Kubernetes API (tests/support/kube_api.py;
no cluster can run here): it runs no process, it gives each new pod the status its test's ``scenario`` names, and for
``succeeded`` it does the step's side of the contract first (writes the outputs and the result, as the step container
would). A pod a test leaves ``running`` until its log is read (``left_running``) ends then, as a container that
exits ends its followed log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.kube_api import KubeApi

NAMESPACE = "ml"
WORKER = "sluice-worker"  # the worker's ServiceAccount, as the chart names it for release "sluice"
POD_VERBS = ["create", "delete", "get", "list", "patch", "watch"]


def worker_rbac() -> list[dict[str, Any]]:
    """The worker's ServiceAccount and the pod launcher's Role and RoleBinding (the chart's rights for launching)."""
    meta = {"namespace": NAMESPACE}
    return [
        {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": WORKER, **meta}},
        {
            "kind": "Role",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "sluice-pod-launcher", **meta},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": list(POD_VERBS)},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "kind": "RoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "sluice-pod-launcher", **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sluice-pod-launcher"},
            "subjects": [{"kind": "ServiceAccount", "name": WORKER, "namespace": NAMESPACE}],
        },
    ]


def _container(state: dict[str, Any], ready: bool = False, image: str = "i") -> dict[str, Any]:
    return {"name": "base", "image": image, "imageID": "", "ready": ready, "restartCount": 0, "state": state}


def status_for(scenario: str) -> dict[str, Any]:
    """The pod status a scenario stands for (what a kubelet and a scheduler would report)."""
    scheduled = [{"type": "PodScheduled", "status": "True"}]
    if scenario == "unschedulable":
        message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        return {"phase": "Pending", "conditions": [condition]}
    if scenario == "image-pull":
        waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "reg/ml-steps:9.9"'}
        return {
            "phase": "Pending",
            "conditions": scheduled,
            "containerStatuses": [_container({"waiting": waiting}, image="reg/ml-steps:9.9")],
        }
    if scenario == "running":
        started = {"running": {"startedAt": "2026-11-25T00:00:00Z"}}
        return {"phase": "Running", "conditions": scheduled, "containerStatuses": [_container(started, ready=True)]}
    exit_code = 0 if scenario == "succeeded" else 3
    ended = {"terminated": {"exitCode": exit_code, "reason": "Completed"}}
    phase = "Succeeded" if exit_code == 0 else "Failed"
    return {"phase": phase, "conditions": scheduled, "containerStatuses": [_container(ended)]}


def act_as_step(pod: dict[str, Any]) -> None:
    """The step's side of the contract for a local artifact root: its outputs and its result file."""
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    outputs = json.loads(env["SLUICE_STEP_OUTPUTS"])
    for uri in outputs.values():
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_text("made in a pod")
    result = {"contract_version": 1, "step": "stub", "status": "succeeded", "outputs": outputs}
    Path(env["SLUICE_RESULT_URI"]).parent.mkdir(parents=True, exist_ok=True)
    Path(env["SLUICE_RESULT_URI"]).write_text(json.dumps({**result, "metrics": {"ran_in": "pod"}}))


class ScriptedKubelet:
    """``on_create``/``on_delete``/``logs`` for ``KubeApi``; ``attach`` the server once it exists."""

    def __init__(self) -> None:
        self.scenario = "succeeded"
        self.left_running: set[str] = set()
        self._server: KubeApi | None = None

    def attach(self, server: KubeApi) -> None:
        self._server = server

    @property
    def api(self) -> KubeApi:
        assert self._server is not None, "attach the mock API server first"
        return self._server

    def on_create(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if name in self.left_running:
            self.api.set_status(name, status_for("running"))
            return
        if self.scenario == "succeeded":
            act_as_step(pod)
        self.api.set_status(name, status_for(self.scenario))

    def on_delete(self, name: str) -> None:
        self.left_running.discard(name)

    def logs(self, name: str, follow: bool) -> Iterator[bytes]:
        yield b"step says hello\n"
        if name in self.left_running:  # its container exits: the followed log ends, the pod has the scenario's end
            self.left_running.discard(name)
            self.api.set_status(name, status_for(self.scenario))
