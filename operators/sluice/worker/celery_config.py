"""Celery config for Sluice's worker pools: Airflow's defaults plus the pod-deletion-cost keeper.

Named by ``[celery] celery_config_options = sluice.worker.celery_config.CELERY_CONFIG`` (the chart sets
it for every pool); importing it in the worker's main process installs the keeper's signal handlers.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from sluice.worker import deletion_cost
from sluice.worker.settings import SLUICE_WORKER_SETTINGS

CELERY_CONFIG: dict[str, Any] = {**DEFAULT_CELERY_CONFIG, **SLUICE_WORKER_SETTINGS}

deletion_cost.install()
