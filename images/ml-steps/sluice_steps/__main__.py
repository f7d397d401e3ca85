"""``sluice-step <name>``: run one step under contract v1; ``sluice-step --describe``: every step's spec as JSON.

The steps are the modules of this package that declare a ``SPEC`` (``sluice_steps.spec``) beside their ``run``:
adding a step is adding such a module. A step is imported by its name only here, in the entry point, which is
what lets a step's cache key cover just the modules it imports (``sluice.module_closure`` follows this dispatch).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from sluice_steps.contract import CONTRACT_VERSION, EXIT_USAGE, StepContext, run_step
from sluice_steps.spec import DESCRIBE_FORMAT, StepSpec

USAGE = "usage: sluice-step STEP | sluice-step --describe"
ENTRYPOINT = "sluice-step"


def _step_module(name: str) -> ModuleType | None:
    """The module ``sluice_steps.<name>`` if it is a step (it declares a ``SPEC``), else None."""
    if not name.isidentifier() or name.startswith("_"):
        return None
    try:
        module = importlib.import_module(f"sluice_steps.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"sluice_steps.{name}":
            return None
        raise
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, StepSpec):
        return None
    if spec.name != name:
        raise TypeError(f"sluice_steps.{name} declares the SPEC of step {spec.name!r}; a step's SPEC names its module")
    return module


def load_step(name: str) -> tuple[StepSpec, Callable[[StepContext], None]] | None:
    """The spec and ``run`` of step ``name``; None when the package has no such step."""
    module = _step_module(name)
    return None if module is None else (module.SPEC, module.run)


def step_specs() -> dict[str, StepSpec]:
    """Every step of the package by name: the modules that declare a ``SPEC`` (this imports them all)."""
    import sluice_steps

    found = {}
    for info in sorted(pkgutil.iter_modules(sluice_steps.__path__), key=lambda info: info.name):
        module = _step_module(info.name)
        if module is not None:
            found[info.name] = module.SPEC
    return found


def describe() -> dict[str, Any]:
    """What ``--describe`` prints: every step's spec, under the contract version the package speaks."""
    import sluice_steps

    return {
        "contract": CONTRACT_VERSION,
        "format": DESCRIBE_FORMAT,
        "package": "sluice-steps",
        "version": sluice_steps.__version__,
        "entrypoint": ENTRYPOINT,
        "steps": {name: spec.to_json() for name, spec in step_specs().items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--describe"]:
        print(json.dumps(describe(), indent=2, sort_keys=True))
        return 0
    started = datetime.now(UTC)  # before the step's imports: they are the step's time, not the launcher's
    loaded = load_step(args[0]) if len(args) == 1 else None
    if loaded is None:
        print(USAGE, file=sys.stderr)
        steps = ", ".join(step_specs())
        print(f"sluice-step: error: unknown step {' '.join(args)!r}; steps: {steps}", file=sys.stderr)
        return EXIT_USAGE
    spec, body = loaded
    return run_step(spec.name, body, started=started, spec=spec)


def run() -> None:
    """Console-script entry: exit without interpreter finalization once the result is written.

    Every output and the result JSON are closed by then; skipping finalization avoids a native thread-pool
    teardown race at exit (pyarrow) that aborted ~1 in 20 failing steps with SIGABRT instead of their code.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
