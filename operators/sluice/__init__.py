"""Sluice: Kubernetes-native ML pipelines on Apache Airflow 3.

The public API is what ``__all__`` names, imported from ``sluice`` itself (``from sluice import MLStepOperator``):

- the operator: ``MLStepOperator`` and the errors a failed step raises (``StepRunError``, ``PermanentStepRunError``);
- pools and profiles: ``Platform`` (``Pool``, ``Profile``), ``load_platform``, ``current_platform``, ``sluice_home``;
- the launchers' registry: ``register_launcher``, ``launcher_types``, ``launcher_for`` and what a launcher
  implements and returns (``Launcher``, ``StepRun``, ``LaunchResult``, ``FailureKind``, ``StepFailed``);
- the model registry's read side: ``model_uri``, ``model_asset``;
- errors: ``SluiceError``, the base of every error the package raises, and ``PlatformError``,
  ``StepContractError``, ``StepFailed``, ``StepRunError``.

Every other module (``sluice.stack``, ``sluice.worker``, ``sluice.compat``, ``sluice.cache``, ...) is internal and
may change in any release. The modules DAGs already import from (``sluice.operators``, ``sluice.platform``,
``sluice.launchers``, ``sluice.registry``) keep these names too.

Importing the package stays cheap and Airflow-free (the CLI, the step side, Airflow's settings import it): each
name is imported on first use, so only ``MLStepOperator`` and its errors load Airflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sluice.errors import SluiceError

__version__ = "0.1.0"

# Public name → the module that defines it, imported on first use (PEP 562).
_LAZY = {
    "MLStepOperator": "sluice.operators",
    "StepRunError": "sluice.operators",
    "PermanentStepRunError": "sluice.operators",
    "Platform": "sluice.platform",
    "Pool": "sluice.platform",
    "Profile": "sluice.platform",
    "PlatformError": "sluice.platform",
    "load_platform": "sluice.platform",
    "current_platform": "sluice.platform",
    "sluice_home": "sluice.platform",
    "register_launcher": "sluice.launchers",
    "launcher_types": "sluice.launchers",
    "launcher_for": "sluice.launchers",
    "Launcher": "sluice.launchers",
    "StepRun": "sluice.launchers",
    "LaunchResult": "sluice.launchers",
    "FailureKind": "sluice.launchers",
    "StepFailed": "sluice.launchers",
    "StepContractError": "sluice.contract",
    "model_uri": "sluice.registry",
    "model_asset": "sluice.registry",
}

# A literal, for linters and type checkers; tests/unit/test_public_api.py keeps it equal to _LAZY + the eager names.
__all__ = [
    "FailureKind",
    "LaunchResult",
    "Launcher",
    "MLStepOperator",
    "PermanentStepRunError",
    "Platform",
    "PlatformError",
    "Pool",
    "Profile",
    "SluiceError",
    "StepContractError",
    "StepFailed",
    "StepRun",
    "StepRunError",
    "__version__",
    "current_platform",
    "launcher_for",
    "launcher_types",
    "load_platform",
    "model_asset",
    "model_uri",
    "register_launcher",
    "sluice_home",
]

if TYPE_CHECKING:
    from sluice.contract import StepContractError
    from sluice.launchers import (
        FailureKind,
        Launcher,
        LaunchResult,
        StepFailed,
        StepRun,
        launcher_for,
        launcher_types,
        register_launcher,
    )
    from sluice.operators import MLStepOperator, PermanentStepRunError, StepRunError
    from sluice.platform import (
        Platform,
        PlatformError,
        Pool,
        Profile,
        current_platform,
        load_platform,
        sluice_home,
    )
    from sluice.registry import model_asset, model_uri
else:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'sluice' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # once imported, a plain attribute
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
