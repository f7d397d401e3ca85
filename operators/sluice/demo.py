"""What an example DAG needs before ``sluice demo`` runs it, declared by the example itself.

A DAG file may define a module-level ``EXAMPLE = Example(...)``: the data it reads (``prepare`` makes it under
the demo-data folder) and the model it scores with (``requires_model``, registered by the example named in
``registered_by``). ``sluice demo`` reads that object from the file of the DAG it was asked to run, prepares
the data, stops with the fix when the model is missing, then runs the DAG. The platform knows no example by
name: a new example declares what it needs and the demo honours it. A file without ``EXAMPLE`` needs
nothing. docs/pipelines.md ("Examples declare what they need") shows the examples' declarations.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sluice.errors import SluiceError
from sluice.platform import sluice_home

ATTRIBUTE = "EXAMPLE"  # the module-level name a DAG file declares its needs under


class DemoError(SluiceError, RuntimeError):
    """An example's needs cannot be met (its data could not be made, its model is not registered)."""


@dataclass(frozen=True)
class Example:
    """An example DAG's needs (one per DAG file: every DAG of that file shares it).

    - ``prepare``: makes the example's source data under the folder it is given (``data_dir()``: the folder the
      DAG's own defaults read from) and keeps data already there; run by ``sluice demo`` before the DAG.
    - ``requires_model``: the model registry entry the DAG scores with; the demo stops before running when the
      registry has no current version of it, naming ``registered_by``, the example that registers one.
    - ``model_param``: the DAG param a run's conf may name another model with (that one is checked instead).
    """

    prepare: Callable[[Path], None] | None = None
    requires_model: str | None = None
    registered_by: str | None = None
    model_param: str | None = None

    def __post_init__(self) -> None:
        if self.requires_model is not None and not self.registered_by:
            raise TypeError(
                f"Example(requires_model={self.requires_model!r}) needs registered_by: the example DAG "
                "that registers that model (what `sluice demo` tells the user to run first)"
            )
        if self.requires_model is None and (self.registered_by or self.model_param):
            raise TypeError("Example: registered_by and model_param describe requires_model; name the model too")

    def model(self, conf: Mapping[str, object] | None = None) -> str | None:
        """The model a run with ``conf`` scores with: the conf's ``model_param`` value, else ``requires_model``."""
        if self.requires_model is None:
            return None
        if self.model_param and conf and self.model_param in conf:
            return str(conf[self.model_param])
        return self.requires_model


def data_dir() -> Path:
    """Where the examples' demo data lives: ``$SLUICE_DEMO_DATA`` (the local stack sets it to its home's
    ``demo-data``; the chart to where the step image bakes the sources), else ``$SLUICE_HOME/demo-data``."""
    return Path(os.environ.get("SLUICE_DEMO_DATA") or sluice_home() / "demo-data")


def declared(dag_file: Path) -> Example:
    """The ``EXAMPLE`` a DAG file declares (imported afresh, under a name of its own), or ``Example()``."""
    name = f"sluice_example_{dag_file.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, dag_file)
    if spec is None or spec.loader is None:
        raise DemoError(f"{dag_file} is not a Python file sluice can import")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, ATTRIBUTE, None)
    if found is None:
        return Example()
    if not isinstance(found, Example):
        raise DemoError(f"{dag_file}: {ATTRIBUTE} is a {type(found).__name__}, not a sluice.demo.Example")
    return found


def prepare(dag_id: str, example: Example, folder: Path | None = None) -> None:
    """Make the example's data under ``folder`` (default ``data_dir()``); a failure names the example and where."""
    if example.prepare is None:
        return
    folder = folder or data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        example.prepare(folder)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DemoError(f"{dag_id}'s demo data could not be made under {folder}: {exc}") from exc


def require_model(dag_id: str, example: Example, conf: Mapping[str, object] | None = None) -> None:
    """Stop (``DemoError`` naming the registry and the example to run first) when the model is not registered."""
    from sluice import artifacts
    from sluice.registry import current, model_uri

    name = example.model(conf)
    if name is None or current(name) is not None:
        return
    where = model_uri(name)
    raise DemoError(
        f"{dag_id} scores with the current version of model {name!r}, and the registry "
        f"({artifacts.local_path(where) or where}) has none yet: run `sluice demo {example.registered_by}` first"
    )
