"""Turn one of Sluice's worker switches (``sluice.worker.dag_cache``, ``exit_wakeup``, ...) on for a test."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest


def switched_on(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The module installed as a worker installs it at start (its switch on, sluice.compat's checks passed);
    Airflow's own code again afterwards."""
    from sluice.worker import patches

    patch = next(p for p in patches.PATCHES if p.module is module)
    monkeypatch.setenv(module.ENV, "true")
    assert patches.install(patch) == patches.ACTIVE
    yield module
    module.uninstall()
