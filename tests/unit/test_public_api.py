"""The public API (issue #28): what ``sluice.__all__`` names exists, importing ``sluice`` stays cheap and Airflow-free,
and every constructor argument of ``MLStepOperator`` is documented as KubernetesPodOperator documents its own."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys

import sluice

EAGER = {"SluiceError", "__version__"}


def test_every_public_name_exists_and_is_its_modules_own() -> None:
    assert sluice.__all__ == sorted(sluice.__all__)
    assert set(sluice.__all__) == EAGER | set(sluice._LAZY), "__all__ and the lazy table name the same things"
    for name in sluice.__all__:
        assert getattr(sluice, name) is not None, name
    for name, module in sluice._LAZY.items():
        assert getattr(sluice, name) is getattr(importlib.import_module(module), name), name
    assert set(sluice.__all__) <= set(dir(sluice))


def test_errors_share_one_base() -> None:
    for name in ("PlatformError", "StepContractError", "StepFailed", "StepRunError", "PermanentStepRunError"):
        assert issubclass(getattr(sluice, name), sluice.SluiceError), name


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import() -> None:
    try:
        sluice.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("sluice.no_such_name did not raise AttributeError")
    from sluice import operators, platform

    assert operators.MLStepOperator is sluice.MLStepOperator and platform.Profile is sluice.Profile


def test_import_sluice_loads_neither_airflow_nor_pydantic() -> None:
    """The CLI, Airflow's settings and the worker import ``sluice``: only what a name needs loads, on first use."""
    code = (
        "import sys, sluice; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'pydantic', 'yaml', 'fsspec'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_every_ml_step_operator_argument_is_documented() -> None:
    doc = inspect.getdoc(sluice.MLStepOperator) or ""
    documented = set(re.findall(r"^:param (\w+):", doc, re.MULTILINE))
    parameters = inspect.signature(sluice.MLStepOperator.__init__).parameters.values()
    own = {p.name for p in parameters if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    assert own - documented == set(), "document each argument with a `:param name:` line in the class docstring"
    assert documented - own == set(), "a `:param` names an argument MLStepOperator does not take"
