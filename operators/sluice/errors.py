"""The base of every error the ``sluice`` package raises: ``except SluiceError`` catches any of them.

Each error keeps the builtin base its callers already catch (``PlatformError`` is still a ``ValueError``, the
runtime errors still ``RuntimeError``s), so this base is added beside those, never instead of them. A step's
failure reaches Airflow as ``sluice.operators.StepRunError``, which carries the launcher's ``FailureKind``.
No Airflow import here: ``import sluice`` stays cheap.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Raised by the ``sluice`` package: bad configuration, a step that failed, a stack that would not start."""
