"""Turn one of Sluice's worker switches (``sluice.worker.dag_cache``, ``exit_wakeup``, ...) on for a test."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest


def switched_on(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The module installed as its environment variable turns it on; Airflow's own code again afterwards."""
    monkeypatch.setenv(module.ENV, "true")
    assert module.install()
    yield module
    module.uninstall()
