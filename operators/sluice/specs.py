"""Step specs on the platform side: what each step of a step image takes, checked when a DAG is parsed.

Each step declares its spec (typed params, inputs, outputs, whether it is pure) in its image's package, which
prints them all with ``sluice-step --describe`` (docs/step-contract.md, "The step's spec"). The platform never
imports a step image's package: the scheduler and dag-processor run the platform image, which does not have it.
So this package ships each step image's ``--describe`` output, ``step_specs/<image>.json`` (``ml-steps.json``
for ``images/ml-steps``); tests/steps/test_step_specs.py fails when the copy differs from what the package says
(``make step-specs`` regenerates it). One copy everywhere, so a DAG is judged the same on a laptop, in CI and in
the cluster's dag-processor.

A spec applies to a step named by its image's short name (``image="ml-steps"``, or the ref the platform
resolves that name to) and run by the image's entry point (``command=["sluice-step", "<step>"]``); any other
image or command is not checked. Values known only when the task runs (Jinja templates, upstream outputs,
mapped values) are checked by name, not by type; the step checks them all again when it starts.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice import compat
from sluice.contract import CONTRACT_VERSION
from sluice.errors import SluiceError
from sluice.platform import Platform

SPEC_DIR = Path(__file__).parent / "step_specs"
DESCRIBE_FORMAT = 1
_UNCHECKED = contextvars.ContextVar("sluice_specs_unchecked", default=False)


class StepSpecError(SluiceError, ValueError):
    """A step's arguments do not match its spec (raised when the DAG is parsed), or a spec file is unreadable."""


@dataclass(frozen=True)
class ParamSpec:
    types: tuple[str, ...]
    required: bool
    default: Any
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class ArtifactSpec:
    required: bool
    many: bool


@dataclass(frozen=True)
class StepSpec:
    image: str
    name: str
    pure: bool
    effects: str
    params: Mapping[str, ParamSpec]
    inputs: Mapping[str, ArtifactSpec]
    outputs: Mapping[str, ArtifactSpec]


@dataclass(frozen=True)
class ImageSpecs:
    """The steps of one step image, as its ``sluice-step --describe`` printed them."""

    image: str
    entrypoint: str
    steps: Mapping[str, StepSpec]


def _step(image: str, name: str, raw: Mapping[str, Any]) -> StepSpec:
    def artifacts(kind: str) -> dict[str, ArtifactSpec]:
        return {n: ArtifactSpec(bool(a["required"]), bool(a["many"])) for n, a in raw[kind].items()}

    params = {
        n: ParamSpec(
            (p["type"],) if isinstance(p["type"], str) else tuple(p["type"]),
            bool(p["required"]),
            p.get("default"),
            tuple(p.get("choices", ())),
        )
        for n, p in raw["params"].items()
    }
    return StepSpec(image, name, bool(raw["pure"]), raw["effects"], params, artifacts("inputs"), artifacts("outputs"))


@functools.cache
def image_specs(image: str) -> ImageSpecs | None:
    """The specs shipped for the step image with this short name, or None when none are."""
    if not image or any(c in image for c in "/:@\\") or image.startswith("."):
        return None
    path = SPEC_DIR / f"{image}.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw["contract"] != CONTRACT_VERSION or raw["format"] != DESCRIBE_FORMAT:
            raise StepSpecError(
                f"{path}: specs of contract {raw['contract']}, format {raw['format']}; this platform speaks contract "
                f"{CONTRACT_VERSION}, format {DESCRIBE_FORMAT}: regenerate it with the image's sluice-step --describe"
            )
        steps = {name: _step(image, name, spec) for name, spec in raw["steps"].items()}
        return ImageSpecs(image, raw["entrypoint"], steps)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, StepSpecError):
            raise
        raise StepSpecError(f"{path} is not a step image's --describe output: {type(exc).__name__}: {exc}") from None


def shipped_images() -> list[str]:
    """Short names of the step images whose specs ship with this package."""
    return sorted(path.stem for path in SPEC_DIR.glob("*.json"))


@dataclass(frozen=True)
class StepCall:
    """A task that runs a step of a step image with shipped specs; ``spec`` is None for a step the image lacks."""

    image: str
    step: str
    spec: StepSpec | None
    known: Sequence[str]


def step_call(image: Any, command: Any, platform: Platform | None = None) -> StepCall | None:
    """Which spec'd step ``image`` + ``command`` run, or None when no shipped spec covers them."""
    if not isinstance(image, str) or not isinstance(command, list | tuple) or len(command) != 2:
        return None
    short = image if image_specs(image) is not None else None
    if short is None and platform is not None:
        short = next((name for name in shipped_images() if platform.image_ref(name) == image), None)
    specs = image_specs(short) if short else None
    entry, step = command
    if specs is None or not isinstance(entry, str) or not isinstance(step, str) or deferred(step):
        return None  # a step named by a template is known only when the task runs (the step checks itself then)
    if entry.rsplit("/", 1)[-1] != specs.entrypoint:
        return None
    return StepCall(specs.image, step, specs.steps.get(step), sorted(specs.steps))


@contextmanager
def unchecked() -> Iterator[None]:
    """Build MLStepOperators without checking their arguments against the spec: a stand-in for a mapped task built
    from its ``.partial()`` arguments (``sluice pod-spec``), whose mapped values are placeholders."""
    token = _UNCHECKED.set(True)
    try:
        yield
    finally:
        _UNCHECKED.reset(token)


def checking() -> bool:
    return not _UNCHECKED.get()


def deferred(value: Any) -> bool:
    """Whether a value is known only when the task runs: a Jinja template, or an upstream task's output (an
    XComArg: anything Airflow resolves at run time)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return hasattr(value, "resolve") and hasattr(value, "iter_references")


def _json_type(value: Any) -> str:
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


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    listed = f"its {kind}s: {', '.join(sorted(known))}" if known else f"it takes no {kind}s"
    return f"unknown {kind} {name!r}{_suggest(name, known)}; {listed}"


def call_problems(call: StepCall, step_params: Any, inputs: Any, outputs: Any) -> list[str]:
    """How a step's arguments break its spec; an argument known only at run time (None here, or deferred) is not
    judged, and the names in a deferred dict still are."""
    spec = call.spec
    if spec is None:
        known = ", ".join(call.known)
        return [f"unknown step {call.step!r}{_suggest(call.step, call.known)}; {call.image}'s steps: {known}"]
    problems: list[str] = []
    if isinstance(step_params, Mapping):
        for name, value in step_params.items():
            param = spec.params.get(name)
            if param is None:
                problems.append(_unknown("param", name, list(spec.params)))
            elif deferred(value):
                continue
            elif not (_json_type(value) in param.types or (_json_type(value) == "integer" and "number" in param.types)):
                problems.append(f"param {name!r} must be {' or '.join(param.types)}, got {_json_type(value)} {value!r}")
            elif param.choices and value is not None and value not in param.choices:
                problems.append(f"param {name!r}: {value!r} is not one of {', '.join(map(repr, param.choices))}")
        missing = [n for n, p in spec.params.items() if p.required and n not in step_params]
        problems += [f"missing required param {n!r}" for n in missing]
    if isinstance(inputs, Mapping):
        for name, value in inputs.items():
            artifact = spec.inputs.get(name)
            if artifact is None:
                problems.append(_unknown("input", name, list(spec.inputs)))
            elif isinstance(value, list | tuple) and not artifact.many:
                problems.append(f"input {name!r} takes one URI, got a list (a fan-in) of {len(value)}")
        problems += [f"missing required input {n!r}" for n, a in spec.inputs.items() if a.required and n not in inputs]
    if isinstance(outputs, Mapping):
        problems += [_unknown("output", name, list(spec.outputs)) for name in outputs if name not in spec.outputs]
        problems += [
            f"missing required output {n!r}" for n, a in spec.outputs.items() if a.required and n not in outputs
        ]
    return problems


def describe_problems(where: str, call: StepCall, problems: list[str]) -> str:
    return f"{where}: step {call.step!r} of image {call.image!r}: {'; '.join(problems)}"


def literal_values(task: Any, field: str, default: Any) -> list[tuple[Any, str]] | None:
    """A mapped task's values of one argument known at parse, each with where it was given; None when a value is
    known only at run time (mapped from an upstream task's output)."""
    partial = task.partial_kwargs
    value = compat.expand_input_value(task)
    if field in partial:
        return [(partial[field], ".partial()")]
    if isinstance(value, dict):
        if field not in value:
            return [(default, "the default")]
        mapped = value[field]
        if isinstance(mapped, list | tuple):
            return [(item, f".expand({field}=[...]) entry {i}") for i, item in enumerate(mapped)]
        return None
    if isinstance(value, list | tuple) and all(isinstance(item, dict) for item in value):
        return [(item.get(field, default), f".expand_kwargs() entry {i}") for i, item in enumerate(value)]
    return None


def mapped_step_problem(task: Any, platform: Platform) -> str | None:
    """Why a mapped MLStepOperator's arguments known at parse break its step's spec, or None. An unmapped step
    is checked when it is built (``MLStepOperator.__init__``); a mapped one only when each instance runs, so its
    ``.partial()`` and literal ``.expand()`` values are checked here, at import (the policy, ``sluice check``)."""
    where = f"task {task.dag_id}.{task.task_id}"
    images, commands = literal_values(task, "image", None), literal_values(task, "command", None)
    if not images or not commands or len(images) != 1 or len(commands) != 1:
        return None
    call = step_call(images[0][0], commands[0][0], platform)
    if call is None:
        return None
    if call.spec is None:
        return describe_problems(where, call, call_problems(call, None, None, None))
    if not call.spec.pure and task.partial_kwargs.get("cache") is True:
        impure = f"cache=True, but the step is impure ({call.spec.effects}): it is never cached"
        return describe_problems(f"{where} (.partial())", call, [impure])
    fields = {"step_params": literal_values(task, "step_params", {}), "inputs": literal_values(task, "inputs", {})}
    fields["outputs"] = literal_values(task, "outputs", {})
    for field, variants in fields.items():
        for value, given in variants or []:
            args = {name: None for name in fields} | {field: value}
            problems = call_problems(call, args["step_params"], args["inputs"], args["outputs"])
            if problems:
                return describe_problems(f"{where} ({field} from {given})", call, problems)
    return None
