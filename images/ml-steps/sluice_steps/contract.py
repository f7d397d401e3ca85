"""The step's side of contract v1 (docs/step-contract.md): read the env, write atomically, report.

Deliberately free of Airflow and Sluice imports: this runs inside the step image.
"""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

from sluice_steps.spec import StepSpec

CONTRACT_VERSION = 1
# The image has no such step, or refused how it was invoked (sysexits' EX_USAGE): the same invocation always fails
# again, so the launcher fails the task without retries.
EXIT_USAGE = 64


class Terminated(Exception):
    """SIGTERM arrived: the task was cancelled or timed out, or its pod is being deleted."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


class StepError(Exception):
    """An expected failure (bad input or param): reported as one line, exit code 2, no traceback."""


class ContractViolation(StepError):
    """The invocation does not match the step's spec, or the step broke its own spec (read a param or an artifact
    it does not declare): exit code 64, so the launcher fails the task without retries (the same invocation of
    the same code fails the same way)."""


@dataclass
class StepContext:
    step: str
    inputs: dict[str, str | list[str]]  # a fan-in input (a mapped step's outputs) is a list of URIs
    outputs: dict[str, str]
    params: dict[str, Any]
    result_uri: str
    prefix: str
    root: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    spec: StepSpec | None = None  # what the step declares; None for a body run without one (tests)

    def _declared(self, kind: str, name: str) -> None:
        """A step reading or writing what its spec does not declare breaks its own spec."""
        if self.spec is None:
            return
        declared = {"param": self.spec.params, "input": self.spec.inputs, "output": self.spec.outputs}[kind]
        if name not in declared:
            raise ContractViolation(
                f"step {self.step!r} broke its own spec: it uses {kind} {name!r}, which its SPEC does not declare "
                f"(declared: {', '.join(sorted(declared)) or 'none'}); add it to SPEC.{kind}s"
            )

    def input(self, name: str) -> str:
        self._declared("input", name)
        if name not in self.inputs:
            raise StepError(f"input {name!r} is missing; the step {self.step!r} needs it (declare it in inputs=)")
        value = self.inputs[name]
        if not isinstance(value, str):
            raise StepError(f"input {name!r} is a list of {len(value)} URIs; the step {self.step!r} takes one URI")
        return value

    def input_list(self, name: str) -> list[str]:
        """A fan-in input (the outputs of a mapped step's instances): always a list, one URI allowed."""
        self._declared("input", name)
        if name not in self.inputs:
            raise StepError(f"input {name!r} is missing; the step {self.step!r} needs it (declare it in inputs=)")
        value = self.inputs[name]
        uris = [value] if isinstance(value, str) else list(value)
        if not uris or not all(isinstance(uri, str) and uri for uri in uris):
            raise StepError(f"input {name!r} must be a URI or a non-empty list of URIs, got {value!r}")
        return uris

    def shared_uri(self, *parts: str) -> str:
        """A place under the artifact root shared across runs (``models/…``, ``tables/…``): what publishing
        steps write to. Needs ``SLUICE_ARTIFACT_ROOT`` (launchers set it) or an explicit URI param. Only an
        impure step may use it: a pure one writes nothing but its outputs (the step cache serves it)."""
        if self.spec is not None and self.spec.pure:
            raise ContractViolation(
                f"step {self.step!r} broke its own spec: it is declared pure but uses a place outside its outputs "
                "(shared_uri); declare it pure=False with its effects"
            )
        if not self.root:
            raise StepError(
                f"step {self.step!r} publishes under the artifact root, but SLUICE_ARTIFACT_ROOT is not set; "
                "run it through a Sluice launcher or pass the target URI as a param"
            )
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts)])

    def output(self, name: str) -> str:
        self._declared("output", name)
        if name not in self.outputs:
            raise StepError(
                f"output {name!r} is not declared; the step {self.step!r} writes it (declare it in outputs=)"
            )
        return self.outputs[name]

    def param(self, name: str, default: Any = ..., kind: type | tuple[type, ...] | None = None) -> Any:
        """A param's value, of the type the spec declares (the runner checked it before the step ran); when it is
        not set, ``default`` if given (a default computed from other params), else the spec's default.
        Without a spec (a body run on its own), ``default`` and ``kind`` are all there is."""
        if self.spec is not None:
            self._declared("param", name)
            if name not in self.params:
                return copy.deepcopy(self.spec.params[name].default) if default is ... else default
        if name not in self.params:
            if default is ...:
                raise StepError(f"param {name!r} is required by step {self.step!r}; set it in step_params")
            return default
        value = self.params[name]
        if kind is not None and not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise StepError(f"param {name!r} must be {names}, got {value!r}")
        return value

    # Writers: each buffers the whole artifact, then lands it atomically.
    def write_bytes(self, name: str, data: bytes) -> str:
        uri = self.output(name)
        atomic_write(uri, data)
        self.written.append(uri)
        return uri

    def write_text(self, name: str, text: str) -> str:
        return self.write_bytes(name, text.encode())

    def write_json(self, name: str, value: Any) -> str:
        return self.write_text(name, json.dumps(value, indent=2, sort_keys=True, default=str))

    def write_parquet(self, name: str, frame: Any) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(name, buffer.getvalue())

    @contextmanager
    def open_output(self, name: str) -> Iterator[IO[bytes]]:
        """Stream an output too big to buffer (a Parquet shard written batch by batch), landing it
        atomically like the writers above: the target appears complete when the block ends, or not at all."""
        uri = self.output(name)
        with atomic_open(uri) as handle:
            yield handle
        self.written.append(uri)

    def write_joblib(self, name: str, obj: Any) -> str:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(obj, buffer)
        return self.write_bytes(name, buffer.getvalue())

    def open_input(self, name: str, mode: str = "rb") -> Any:
        return self.open_uri(self.input(name), mode, what=f"input {name!r}")

    def open_uri(self, uri: str, mode: str = "rb", what: str = "artifact") -> Any:
        try:
            return fsspec.open(uri, mode).open()
        except FileNotFoundError:
            raise StepError(f"{what}: {uri} does not exist") from None

    def read_parquet(self, name: str) -> Any:
        import pandas as pd

        with self.open_input(name) as handle:
            try:
                return pd.read_parquet(handle)
            except Exception as exc:
                raise StepError(f"input {name!r}: {self.inputs[name]} is not a readable Parquet file ({exc})") from None

    def read_joblib(self, name: str) -> Any:
        import joblib

        with self.open_input(name) as handle:
            return joblib.load(handle)

    def read_json(self, name: str) -> Any:
        with self.open_input(name, "r") as handle:
            return json.load(handle)


def atomic_write(uri: str, data: bytes) -> None:
    """``data`` landed whole at ``uri`` through ``atomic_open``. A failure leaves neither the target nor a temp
    file."""
    with atomic_open(uri) as handle:
        handle.write(data)


@contextmanager
def atomic_open(uri: str) -> Iterator[IO[bytes]]:
    """A writable stream that lands at ``uri`` only if the block ends without an exception.

    On a filesystem: a temp name beside the target, renamed onto it at the end (a killed process leaves only
    ``.<name>.tmp-<uuid>``, which the operator sweeps). On an object store: a streamed (multipart) upload
    that is completed at the end and aborted on an error; a killed process never completes it, so no object
    appears (the bucket's lifecycle rule reaps the orphaned parts).
    """
    fs, path = url_to_fs(uri)
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if {"file", "local"} & set(protocols):
        parent, _, base = path.rpartition("/")
        fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.{base}.tmp-{uuid.uuid4().hex}"
        try:
            with fs.open(tmp, "wb") as handle:
                yield handle
            fs.mv(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
        return
    handle = fs.open(path, "wb")
    try:
        yield handle
    except BaseException:
        handle.discard()  # aborts the multipart upload
        handle.closed = True  # and never complete it later (close() on garbage collection would)
        raise
    handle.close()


def _env_json(name: str, environ: dict[str, str]) -> dict[str, Any]:
    raw = environ.get(name)
    if raw is None:
        raise StepError(f"{name} is not set; run the step through a Sluice launcher (docs/step-contract.md)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StepError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StepError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def context_from_env(step: str, environ: dict[str, str] | None = None) -> StepContext:
    env = dict(os.environ if environ is None else environ)
    version = env.get("SLUICE_CONTRACT_VERSION")
    if version != str(CONTRACT_VERSION):
        raise StepError(f"SLUICE_CONTRACT_VERSION is {version!r}; this step image speaks contract v{CONTRACT_VERSION}")
    if not env.get("SLUICE_RESULT_URI"):
        raise StepError("SLUICE_RESULT_URI is not set; run the step through a Sluice launcher")
    return StepContext(
        step=step,
        inputs=_env_json("SLUICE_STEP_INPUTS", env),
        outputs=_env_json("SLUICE_STEP_OUTPUTS", env),
        params=_env_json("SLUICE_STEP_PARAMS", env),
        result_uri=env["SLUICE_RESULT_URI"],
        prefix=env.get("SLUICE_ARTIFACT_PREFIX", ""),
        root=env.get("SLUICE_ARTIFACT_ROOT", ""),
    )


def _discard(ctx: StepContext) -> None:
    """A failed step leaves no output behind, not even the ones it finished before failing."""
    for uri in ctx.written:
        try:
            fs, path = url_to_fs(uri)
            if fs.exists(path):
                fs.rm(path)
        except Exception as exc:  # report, but the step's own error is what matters
            print(f"sluice-step: warning: could not remove {uri}: {exc}", file=sys.stderr)


def check_invocation(ctx: StepContext) -> None:
    """Refuse an invocation that does not match the step's spec, naming every difference."""
    if ctx.spec is None:
        return
    problems = ctx.spec.invocation_problems(ctx.params, ctx.inputs, ctx.outputs)
    if problems:
        raise ContractViolation(f"step {ctx.step!r} refuses its invocation: {'; '.join(problems)}")


def run_step(
    step: str,
    body: Callable[[StepContext], None],
    environ: dict[str, str] | None = None,
    started: datetime | None = None,
    spec: StepSpec | None = None,
) -> int:
    """Run ``body`` under the contract; returns the process exit code. ``started``: when the step began, if
    before this call (the result's ``started_at``). With a ``spec`` the invocation is checked against it first,
    and the step may use only what it declares."""
    started_at = (started or datetime.now(UTC)).isoformat()
    ctx: StepContext | None = None
    # In a container the step is PID 1, which has no default action for SIGTERM: without a handler the launcher
    # (or the kubelet) would wait out the grace period and SIGKILL it, leaving its temp files behind.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        ctx = context_from_env(step, environ)
        ctx.spec = spec
        check_invocation(ctx)
        body(ctx)
        missing = sorted(set(ctx.outputs) - {name for name, uri in ctx.outputs.items() if uri in ctx.written})
        if missing:
            raise StepError(f"step {step!r} did not write declared output(s) {', '.join(missing)}")
        result = {
            "contract_version": CONTRACT_VERSION,
            "step": step,
            "status": "succeeded",
            "outputs": ctx.outputs,
            "metrics": ctx.metrics,
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(),
        }
        atomic_write(ctx.result_uri, json.dumps(result, indent=2, default=str).encode())
        return 0
    except Terminated:
        if ctx:
            _discard(ctx)
        print(
            f"sluice-step: error: step {step!r} stopped by SIGTERM (cancelled, timed out or evicted)", file=sys.stderr
        )
        return 128 + signal.SIGTERM
    except StepError as exc:
        if ctx:
            _discard(ctx)
        print(f"sluice-step: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ContractViolation) else 2
    except Exception as exc:
        if ctx:
            _discard(ctx)
        traceback.print_exc()
        print(f"sluice-step: error: step {step!r} crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
