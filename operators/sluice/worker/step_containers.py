"""At worker start, when steps run in containers: remove what dead tasks left, and import the launcher once.

A worker that was killed may leave step containers whose task process is gone (the guard that removes them
can itself be killed with the machine's processes); a new worker on this host sweeps them before it takes
work. The container launcher builds each container from the step's pod (the cncf.kubernetes provider's
KubernetesPodOperator, ~0.7 s to import): imported here, before the pool forks, no task pays for it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_init

from sluice.platform import PlatformError, current_platform

log = logging.getLogger(__name__)


def prepare() -> list[str]:
    """Sweep orphaned step containers and warm the launcher; returns the names of the containers removed."""
    try:
        if current_platform().launcher.type != "container":
            return []
    except PlatformError:
        return []  # the worker reports the platform error where it parses DAGs
    import airflow.providers.cncf.kubernetes.operators.pod  # noqa: F401  (what every step's pod is built with)

    from sluice.launchers.container import sweep

    removed = sweep()
    if removed:
        log.warning("removed %d step container(s) left by tasks that are gone: %s", len(removed), ", ".join(removed))
    return removed


def _on_worker_init(**_: Any) -> None:
    prepare()


worker_init.connect(_on_worker_init, weak=False, dispatch_uid="sluice-step-containers")
