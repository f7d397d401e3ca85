"""Every error the sluice package defines derives from ``sluice.SluiceError`` (and keeps its builtin base)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import sluice
from sluice import SluiceError


def package_exceptions() -> list[type[BaseException]]:
    """Each exception class defined at module level anywhere in the package (``__main__`` runs the CLI)."""
    found = []
    for info in pkgutil.walk_packages(sluice.__path__, "sluice."):
        if info.name == "sluice.__main__":
            continue
        module = importlib.import_module(info.name)
        found += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
        ]
    return found


def test_every_exception_of_the_package_is_a_sluice_error() -> None:
    found = package_exceptions()
    names = {cls.__qualname__ for cls in found}
    assert {"PlatformError", "StepFailed", "StepContractError", "StackError", "StepRunError"} <= names, names
    assert [cls for cls in found if not issubclass(cls, SluiceError)] == []


def test_errors_keep_the_builtin_bases_callers_catch() -> None:
    from sluice.contract import StepContractError
    from sluice.platform import PlatformError
    from sluice.stack.errors import StackError

    assert issubclass(PlatformError, ValueError)
    assert issubclass(StepContractError, RuntimeError) and issubclass(StackError, RuntimeError)
