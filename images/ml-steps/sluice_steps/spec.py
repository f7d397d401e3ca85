"""Each step's declared interface under contract v1: its typed params, its inputs and outputs, and whether it
is pure (docs/step-contract.md, "The step's spec").

A step module declares ``SPEC = StepSpec(...)`` beside its ``run``; the steps of this package are the modules
that declare one (no list to keep by hand: ``sluice_steps.__main__`` finds them). ``sluice-step --describe``
prints every spec as JSON, which the platform checks DAGs against at import (it ships a copy:
``operators/sluice/step_specs/ml-steps.json``), and the contract runner checks each invocation against the step's
spec before the step runs. Nothing here imports by a computed name, so a step's cache key still covers only the
modules it imports (``sluice.module_closure``).

Types are JSON's (the params travel as JSON): ``string``, ``integer``, ``number`` (an integer is one too),
``boolean``, ``array``, ``object``, ``null``; a param may allow several. Standard library only, no Airflow.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
DESCRIBE_FORMAT = 1  # the layout of ``--describe``'s JSON; bumped if it changes incompatibly


def json_type(value: Any) -> str:
    """The JSON type of a value as it travels in ``SLUICE_STEP_PARAMS``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def type_matches(value: Any, types: tuple[str, ...]) -> bool:
    kind = json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


def suggestion(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for a close known name, else nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Param:
    """One parameter: its JSON type(s), whether a DAG must set it, its default otherwise."""

    type: str | tuple[str, ...]
    description: str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()

    @property
    def types(self) -> tuple[str, ...]:
        return (self.type,) if isinstance(self.type, str) else tuple(self.type)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type if isinstance(self.type, str) else list(self.type),
            "required": self.required,
            "description": self.description,
        }
        if not self.required:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class Artifact:
    """One input or output: a single URI, or (``many``) a fan-in list of URIs (one URI is accepted too)."""

    description: str
    required: bool = True
    many: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "required": self.required, "many": self.many}


@dataclass(frozen=True)
class StepSpec:
    """What a step takes and gives. ``pure``: its outputs depend only on its code, params and input bytes, and it
    writes nothing but its outputs, so the step cache may serve it; an impure step says what else it reads or
    writes in ``effects`` and is never cached."""

    name: str
    summary: str
    params: Mapping[str, Param] = field(default_factory=dict)
    inputs: Mapping[str, Artifact] = field(default_factory=dict)
    outputs: Mapping[str, Artifact] = field(default_factory=dict)
    pure: bool = True
    effects: str = ""

    def __post_init__(self) -> None:
        where = f"SPEC of step {self.name!r}"
        for name, param in self.params.items():
            unknown = [t for t in param.types if t not in JSON_TYPES]
            if unknown:
                raise TypeError(f"{where}: param {name!r} has type(s) {unknown}; types: {', '.join(JSON_TYPES)}")
            if param.required and param.default is not None:
                raise TypeError(f"{where}: param {name!r} is required and has a default; pick one")
            if not param.required and param.default is not None and not type_matches(param.default, param.types):
                raise TypeError(f"{where}: param {name!r}: default {param.default!r} is not {'/'.join(param.types)}")
        if self.pure == bool(self.effects):
            raise TypeError(f"{where}: an impure step says what it does beyond its outputs (effects=); a pure one not")

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "pure": self.pure,
            "effects": self.effects,
            "params": {name: param.to_json() for name, param in sorted(self.params.items())},
            "inputs": {name: spec.to_json() for name, spec in sorted(self.inputs.items())},
            "outputs": {name: spec.to_json() for name, spec in sorted(self.outputs.items())},
        }

    def invocation_problems(
        self, params: Mapping[str, Any], inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> list[str]:
        """Every way an invocation (the contract env's params, inputs and outputs) differs from this spec."""
        problems: list[str] = []
        for name, value in params.items():
            param = self.params.get(name)
            if param is None:
                problems.append(self._unknown("param", name, self.params))
            elif not type_matches(value, param.types):
                problems.append(f"param {name!r} must be {' or '.join(param.types)}, got {json_type(value)} {value!r}")
            elif param.choices and value is not None and value not in param.choices:
                problems.append(f"param {name!r}: {value!r} is not one of {', '.join(map(repr, param.choices))}")
        problems += [f"missing required param {n!r}" for n, p in self.params.items() if p.required and n not in params]
        for name, value in inputs.items():
            spec = self.inputs.get(name)
            if spec is None:
                problems.append(self._unknown("input", name, self.inputs))
            elif isinstance(value, list) and not spec.many:
                problems.append(f"input {name!r} takes one URI, got a list of {len(value)}")
            elif not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
                problems.append(f"input {name!r} must be a URI{' or a list of URIs' if spec.many else ''}")
        problems += [f"missing required input {n!r}" for n, a in self.inputs.items() if a.required and n not in inputs]
        problems += [self._unknown("output", name, self.outputs) for name in outputs if name not in self.outputs]
        problems += [
            f"missing required output {n!r}" for n, a in self.outputs.items() if a.required and n not in outputs
        ]
        return problems

    def _unknown(self, kind: str, name: str, known: Mapping[str, Any]) -> str:
        names = sorted(known)
        listed = f"its {kind}s: {', '.join(names)}" if names else f"it takes no {kind}s"
        return f"unknown {kind} {name!r}{suggestion(name, names)}; {listed}"
