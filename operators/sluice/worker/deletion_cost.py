"""Keep this worker pod's ``controller.kubernetes.io/pod-deletion-cost`` equal to its running tasks.

When a pool scales in, the ReplicaSet deletes the pods with the lowest deletion cost first; an idle worker
(cost 0) goes before a busy one. The count is read in the worker's main process from Celery's own
bookkeeping (``celery.worker.state.active_requests``, kept for every pool type, read through ``sluice.compat``:
on a Celery release it was not tested on the keeper does not run, and says why), so it needs no cooperation from
the task processes. Patching is best effort: a failure is logged, never fatal.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice import compat

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger(__name__)

Patcher = Callable[[str, str, dict[str, Any]], Any]


def running_tasks() -> int:
    return compat.running_celery_requests()


def kubernetes_patcher() -> Patcher:
    """``CoreV1Api.patch_namespaced_pod`` from in-cluster config, else the kubeconfig (tests, dev)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CoreV1Api()
    return lambda name, namespace, body: api.patch_namespaced_pod(name, namespace, body, _request_timeout=5)


class DeletionCostKeeper:
    """Polls the running-task count and patches the pod annotation whenever it changes."""

    def __init__(
        self,
        pod_name: str,
        namespace: str,
        patch: Patcher,
        count: Callable[[], int] = running_tasks,
        interval: float = 1.0,
    ) -> None:
        self.pod_name = pod_name
        self.namespace = namespace
        self.patch = patch
        self.count = count
        self.interval = interval
        self.last: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> int | None:
        """Patch if the cost changed; returns the cost now on the pod as far as we know."""
        cost = self.count()
        if cost == self.last:
            return cost
        body = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        try:
            self.patch(self.pod_name, self.namespace, body)
        except Exception as exc:  # best effort by design: scaling must never break task execution
            log.warning("could not set %s=%s on pod %s/%s: %s", ANNOTATION, cost, self.namespace, self.pod_name, exc)
            return self.last
        log.debug("pod %s/%s %s=%s", self.namespace, self.pod_name, ANNOTATION, cost)
        self.last = cost
        return cost

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def start(self) -> None:
        self.sync()
        self._thread = threading.Thread(target=self._loop, name="sluice-deletion-cost", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval * 2)


def from_environment(
    patcher_factory: Callable[[], Patcher] = kubernetes_patcher,
) -> DeletionCostKeeper | None:
    """A keeper for this pod when running on Kubernetes (``POD_NAME`` set by the chart), else None."""
    if os.environ.get("SLUICE_POD_DELETION_COST", "true").lower() in {"0", "false", "no"}:
        return None
    pod_name = os.environ.get("POD_NAME")
    if not pod_name:
        return None
    if compat.fallback_problem(compat.Feature.POD_DELETION_COST) is not None:
        return None  # the warning names the reason
    namespace = os.environ.get("POD_NAMESPACE") or (
        NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else "default"
    )
    try:
        patch = patcher_factory()
    except Exception as exc:
        log.warning("pod deletion cost disabled: no Kubernetes client configuration (%s)", exc)
        return None
    interval = float(os.environ.get("SLUICE_POD_DELETION_COST_INTERVAL", "1"))
    return DeletionCostKeeper(pod_name, namespace, patch, interval=interval)


_keeper: DeletionCostKeeper | None = None


def install() -> None:
    """Connect to the worker's lifecycle signals; idempotent (Celery signals dedupe by uid)."""
    from celery.signals import worker_ready, worker_shutting_down

    def _start(**_: Any) -> None:
        global _keeper
        _keeper = from_environment()
        if _keeper:
            _keeper.start()
            log.info("keeping %s of pod %s/%s", ANNOTATION, _keeper.namespace, _keeper.pod_name)

    def _stop(**_: Any) -> None:
        # The thread keeps running through the warm shutdown so the cost still tracks the draining
        # tasks; it dies with the process.
        log.info("worker shutting down; deletion cost keeps tracking the tasks still running")

    worker_ready.connect(_start, weak=False, dispatch_uid="sluice-deletion-cost-start")
    worker_shutting_down.connect(_stop, weak=False, dispatch_uid="sluice-deletion-cost-stop")
