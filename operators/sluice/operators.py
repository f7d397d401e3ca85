"""MLStepOperator: a DAG declares a step (image, command, inputs, outputs, params, profile).

How the step runs (local process or pod) is the platform's choice, not the DAG's: the same DAG file
runs on a laptop and on a cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, XComNotFound

from sluice import artifacts, specs
from sluice.cache import CachePlan, StepCache, cache_key
from sluice.contract import ENV_INPUTS, ENV_OUTPUTS, ENV_RESULT_URI, StepContractError, read_result, step_env
from sluice.errors import SluiceError
from sluice.launchers import FailureKind, Launcher, LaunchResult, StepFailed, StepRun, launcher_for
from sluice.platform import Platform, PlatformError, current_platform
from sluice.quantity import parse_quantity


class StepRunError(SluiceError, AirflowException):
    """A try of a step failed; ``kind`` says how (``FailureKind``: out of memory, timeout, contract, ...).

    Airflow retries the task as usual; a permanent kind is raised as ``PermanentStepRunError`` instead, an
    ``AirflowFailException``, so it fails without retries. The error the launcher or the contract check raised,
    if any, is chained as ``__cause__``.
    """

    def __init__(self, message: str, kind: FailureKind | str = FailureKind.EXIT) -> None:
        super().__init__(message)
        self.kind = FailureKind(kind)

    @staticmethod
    def of(kind: FailureKind, message: str) -> StepRunError:
        """The error for a failure of this kind: permanent kinds fail without retries."""
        return (PermanentStepRunError if kind.permanent else StepRunError)(message, kind)

    def serialize(self) -> tuple[str, tuple[str, ...], dict[str, str]]:
        cls = self.__class__
        return f"{cls.__module__}.{cls.__name__}", (str(self),), {"kind": self.kind.value}


class PermanentStepRunError(StepRunError, AirflowFailException):
    """A step failure no retry can change (contract violation, missing image, unknown step): not retried."""


def failure_message(step: StepRun, platform: Platform, launched: LaunchResult) -> str:
    """What the task's error says for a failed launch: memory and time name the profile and what to change."""
    name, profile = step.profile_name, step.profile
    if launched.failure is FailureKind.OUT_OF_MEMORY:
        larger = platform.larger_profile(name)
        hint = (
            f"use profile {larger!r} ({platform.profile(larger).memory})"
            if larger
            else "no profile has more memory: add one"
        )
        return (
            f"step exceeded memory limit of profile {name!r} ({profile.memory}): {launched.message}; "
            f"{hint} or reduce the step's data"
        )
    if launched.failure is FailureKind.TIMEOUT:
        return (
            f"step exceeded the timeout of profile {name!r} ({profile.timeout_seconds}s) and was stopped: "
            f"{launched.message}"
        )
    return launched.message


class MLStepOperator(BaseOperator):
    """Run one ML step under step contract v1 and pass its output URIs on through XCom.

    ``outputs`` maps output name → file name under the task's artifact prefix; each output's URI is
    pushed as an XCom under its name, so ``inputs={"data": upstream.output["data"]}`` wires steps.

    A step of an image whose specs ship with Sluice (``sluice.specs``: ``image="ml-steps"``,
    ``command=["sluice-step", "<step>"]``) is checked against its spec when the DAG is parsed: an unknown step,
    param, input or output, a missing required one or a param of the wrong type fails the import, naming the task,
    the step and the field. Caching follows the spec: an impure step (one that reads or writes outside its inputs
    and outputs) is never cached. ``cache=False`` opts a pure step out too; ``cache_version`` is part of the cache
    key (bump it to run the step again) and is what lets a step whose image is a mutable tag be cached on a cluster.

    Where the step runs (a local process, a container, a pod) is the platform's ``launcher.type``, never an
    argument: the same task runs on a laptop and on a cluster. Every other keyword argument is
    ``BaseOperator``'s (``task_id``, ``retries``, ``queue``, ``pool``, ...).

    :param image: the step image: a short name from the platform's ``stepImages`` (``"ml-steps"``, resolved to
        its pinned reference) or a full image reference. Pods and containers run it; the local launcher runs
        ``command`` on this machine instead.
    :param command: the step's command and arguments, run as the image's entrypoint would be
        (``["sluice-step", "train"]``). Templated.
    :param inputs: input name → artifact URI the step reads: a URI, an upstream step's output
        (``upstream.output["data"]``), or a fan-in from a mapped step (``mapped.output["x"]``: the URIs of the
        instances that succeeded). Only URIs travel through XCom, never data. Templated.
    :param outputs: output name → plain file name (no ``/``, not starting with ``_``) under the task's artifact
        prefix ``{root}/{dag_id}/{run_id}/{task_id}/``; each output's URI is pushed as an XCom under its name.
    :param step_params: JSON-serialisable parameters handed to the step (``SLUICE_STEP_PARAMS``); part of the
        cache key. Templated.
    :param profile: the platform profile whose resources the step gets (cpu, memory, GPU, node selector,
        tolerations, timeout); an unknown profile fails the DAG's import, naming the profiles that exist.
    :param cache: whether the step's outputs may be reused from an earlier run with the same cache key (code,
        command, params, inputs). Unset: as its spec says (a pure step is cached, an impure one never; a step
        without a spec is cached). ``False`` opts a pure step out; ``True`` on an impure step fails the import.
    :param cache_version: a string added to the cache key: bump it to run the step again, and set it to cache a
        step whose image is a mutable tag (no digest names its code).
    """

    template_fields: Sequence[str] = ("command", "inputs", "step_params")
    template_fields_renderers = {"step_params": "json", "inputs": "json"}
    ui_color = "#cde8f6"

    def __init__(
        self,
        *,
        image: str,
        command: list[str],
        inputs: dict[str, Any] | None = None,
        outputs: dict[str, str] | None = None,
        step_params: dict[str, Any] | None = None,
        profile: str = "default",
        cache: bool | None = None,
        cache_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.command = list(command)
        self.inputs = inputs or {}
        self.outputs = outputs or {}
        self.step_params = step_params or {}
        self.profile = profile
        self.cache = cache
        self.cache_version = cache_version
        self._launcher: Launcher | None = None
        try:
            current_platform().profile(profile)
        except PlatformError as exc:
            raise ValueError(f"task {self.task_id!r}: {exc}") from None
        for name, filename in self.outputs.items():
            if not filename or "/" in filename or filename.startswith("_"):
                raise ValueError(
                    f"task {self.task_id!r}: output {name!r} has file name {filename!r}; use a plain file "
                    "name such as 'model.joblib' (no '/', not starting with '_')"
                )
        self.step_spec = self._check_spec()

    def _check_spec(self) -> specs.StepSpec | None:
        """The spec of the step this task runs (None where no shipped spec covers it); arguments that break it
        fail here, at DAG parse, naming the task, the step and each field."""
        call = specs.step_call(self.image, self.command, current_platform())
        if call is None or not specs.checking():
            return None if call is None else call.spec
        in_dag = self.has_dag()  # type: ignore[no-untyped-call]
        where = f"task {self.dag_id}.{self.task_id}" if in_dag else f"task {self.task_id!r}"
        problems = specs.call_problems(call, self.step_params, self.inputs, self.outputs)
        if call.spec is not None and not call.spec.pure and self.cache:
            problems.append(f"cache=True, but the step is impure ({call.spec.effects}): it is never cached")
        if problems:
            raise specs.StepSpecError(specs.describe_problems(where, call, problems))
        return call.spec

    def build_step_run(
        self,
        platform: Platform,
        dag_id: str,
        run_id: str,
        try_number: int,
        map_index: int = -1,
        inputs: dict[str, Any] | None = None,
    ) -> StepRun:
        """Everything a launcher needs for one try of this step; ``sluice pod-spec`` builds it offline."""
        prefix = artifacts.task_prefix(platform.artifacts.root, dag_id, run_id, self.task_id, map_index)
        outputs = {name: artifacts.join(prefix, filename) for name, filename in self.outputs.items()}
        return StepRun(
            dag_id=dag_id,
            task_id=self.task_id,
            run_id=run_id,
            try_number=try_number,
            map_index=map_index,
            image=platform.image_ref(self.image),
            image_pull_policy=platform.image_pull_policy(self.image),
            command=self.command,
            env=step_env(
                self._resolved_inputs() if inputs is None else inputs,
                outputs,
                self.step_params,
                prefix,
                root=platform.artifacts.root,
            ),
            profile_name=self.profile,
            profile=platform.profile(self.profile),
            artifact_prefix=prefix,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        step, plan = self._prepare(context)
        outputs = json.loads(step.env[ENV_OUTPUTS])
        if plan.store and plan.key:
            key = plan.key
            hit = plan.store.lookup(key, outputs)
            if hit:
                src = hit.source
                self.log.info(
                    "cache hit, key %s, from run %s (task %s.%s): step skipped; code: %s",
                    key[:16],
                    src.get("run_id"),
                    src.get("dag_id"),
                    src.get("task_id"),
                    plan.note,
                )
                kept = {k: v for k, v in hit.result.items() if k not in ("resources", "launcher")}  # not this try's
                result = {**kept, "cache": {"hit": True, "key": key, "from_run": src.get("run_id")}}
                artifacts.write_json_atomic(step.env[ENV_RESULT_URI], result)
                return self._publish(context, outputs, result)
            self.log.info("cache miss, key %s: running the step; code: %s", key[:16], plan.note)
        else:
            self.log.info("cache off: %s", plan.note)
        launcher = self._launcher
        assert launcher is not None  # set by _prepare
        return self._finish(context, step, plan, lambda: launcher.run(step, self.log, context))

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Where a deferred step pod comes back (``launcher.deferrable``): finish the pod, then the step."""
        step, plan = self._prepare(context)
        launcher = self._launcher
        assert launcher is not None  # set by _prepare
        return self._finish(context, step, plan, lambda: launcher.resume(step, self.log, context, event))

    def _prepare(self, context: Context) -> tuple[StepRun, CachePlan]:
        """This try's step and launcher, and whether the cache serves it: the key names the code the
        launcher runs (``Launcher.code_identity``), so an edited step or a new image digest runs again."""
        platform = current_platform()
        ti = context["ti"]
        step = self.build_step_run(platform, ti.dag_id, ti.run_id, ti.try_number, getattr(ti, "map_index", -1))
        try:
            self._launcher = launcher_for(platform)
        except StepFailed as exc:  # an unknown launcher type: no retry can fix it
            raise PermanentStepRunError(str(exc), exc.kind) from exc
        if self.cache is False:
            return step, CachePlan(None, None, "the step sets cache=False")
        spec = getattr(self, "step_spec", None)
        if spec is not None and not spec.pure:
            return step, CachePlan(None, None, f"step {spec.name!r} is impure ({spec.effects}): never cached")
        if not platform.artifacts.cache.enabled:
            return step, CachePlan(None, None, "artifacts.cache.enabled is false in the platform config")
        code = self._launcher.code_identity(step, self.cache_version)
        if code.value is None:
            return step, CachePlan(None, None, code.about)
        inputs, outputs = json.loads(step.env[ENV_INPUTS]), json.loads(step.env[ENV_OUTPUTS])
        started = time.monotonic()
        key = cache_key(code.value, self.command, self.step_params, inputs, outputs, self.cache_version)
        seconds = time.monotonic() - started
        return step, CachePlan(StepCache(platform.artifacts.root), key, code.about, seconds)

    def _finish(
        self, context: Context, step: StepRun, plan: CachePlan, launch: Callable[[], LaunchResult]
    ) -> dict[str, Any]:
        """Launch (or resume) the step, check its result, fill the cache, publish the outputs."""
        ti = context["ti"]
        outputs = json.loads(step.env[ENV_OUTPUTS])
        platform = current_platform()
        failure: tuple[FailureKind, str] | None = None
        cause: Exception | None = None
        launched = LaunchResult(None)
        try:
            launched = launch()  # a deferring launcher raises TaskDeferred here: it passes through untouched
            if launched.failure is not None:
                failure = (launched.failure, failure_message(step, platform, launched))
            else:
                result = read_result(step.env[ENV_RESULT_URI], outputs)
        except StepContractError as exc:
            failure, cause = (FailureKind.CONTRACT, str(exc)), exc
        except StepFailed as exc:
            failure, cause = (exc.kind, str(exc)), exc
        except PlatformError as exc:
            failure, cause = (FailureKind.START, str(exc)), exc
        if failure is not None:
            kind, message = failure
            for partial in artifacts.remove_partials(step.artifact_prefix):
                self.log.warning("removed partial artifact %s left by the failed step", partial)
            self.log.error("step failed (%s%s): %s", kind, ", not retried" if kind.permanent else "", message)
            raise StepRunError.of(kind, message) from cause
        result = {**result, "launcher": platform.launcher.type}  # what ran this try: the run summary says it
        peak = launched.peak_memory_bytes
        if peak is not None:
            result = {
                **result,
                "resources": {
                    "profile": step.profile_name,
                    "peak_rss_bytes": peak,
                    "memory_limit_bytes": int(parse_quantity(step.profile.memory)),
                },
            }
            self.log.info(
                "peak memory %.0f MiB of profile %r's %s", peak / 2**20, step.profile_name, step.profile.memory
            )
        if plan.store and plan.key:
            source = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id}
            started = time.monotonic()
            plan.store.store(plan.key, outputs, result, source)
            cache: dict[str, Any] = {
                "hit": False,
                "key": plan.key,
                "key_seconds": round(plan.seconds, 4),
                "store_seconds": round(time.monotonic() - started, 4),
            }
        else:
            cache = {"hit": False, "key": None, "off": plan.note}
        return self._publish(context, outputs, {**result, "cache": cache})

    def _publish(self, context: Context, outputs: dict[str, str], result: dict[str, Any]) -> dict[str, Any]:
        for name, uri in outputs.items():
            context["ti"].xcom_push(key=name, value=uri)
        for name, value in sorted(result.get("metrics", {}).items()):
            self.log.info("metric %s = %s", name, value)
        return result

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render as any operator; an input whose upstream step ended without producing it (it failed, or never ran:
        a step with trigger rule ``all_done`` runs after such an upstream) fails this task without retries: the
        upstream is done, so a retry reads the same nothing."""
        try:
            super().render_template_fields(context, jinja_env)
        except XComNotFound as exc:
            names = [name for name, value in self.inputs.items() if _reads(value, exc.task_id, exc.key)]
            which = f"input {names[0]!r}" if names else f"output {exc.key!r} of {exc.task_id}"
            raise AirflowFailException(
                f"{which}: {exc.task_id} produced nothing (no {exc.key!r} output: it failed or did not run), so this "
                "step has nothing to run on; not retried"
            ) from None

    def _resolved_inputs(self) -> dict[str, str | list[str]]:
        """Input name → URI; or → list of URIs for a fan-in from mapped steps (``mapped.output[name]``, or
        a list of several such outputs, flattened).

        A fan-in holds the outputs of the mapped instances that succeeded (a failed instance pushed none); one that
        holds none fails the task without retries (the upstream is done: a retry finds the same nothing).
        """
        resolved: dict[str, str | list[str]] = {}
        for name, value in self.inputs.items():
            if isinstance(value, Sequence) and not isinstance(value, str | bytes):
                uris = []
                # len + index, not iteration: a lazy XCom sequence (a mapped task's outputs) is read by count and
                # offset; iterating it reads one past the end, which Airflow logs as an "XCom not found" error.
                for item in [value[i] for i in range(len(value))]:
                    many = isinstance(item, Sequence) and not isinstance(item, str | bytes)
                    uris.extend([item[i] for i in range(len(item))] if many else [item])
                if not uris:
                    raise AirflowFailException(
                        f"input {name!r}: its upstream produced nothing (every mapped instance it gathers failed, or "
                        "none ran), so there is nothing to pick from; not retried"
                    )
                if not all(isinstance(uri, str) and uri for uri in uris):
                    raise AirflowException(
                        f"input {name!r} resolved to {uris!r}; a fan-in input needs artifact URIs (upstream "
                        f"steps' outputs, upstream.output['{name}'])"
                    )
                resolved[name] = uris
                continue
            if not isinstance(value, str) or not value:
                raise AirflowException(
                    f"input {name!r} resolved to {value!r}, not an artifact URI; pass an upstream step's "
                    f"output (upstream.output['{name}']) or a URI string"
                )
            resolved[name] = value
        return resolved

    def on_kill(self) -> None:
        if self._launcher is not None:
            self._launcher.on_kill()


def is_mapped_step(task: Any) -> bool:
    """Whether ``task`` is a mapped MLStepOperator (``.partial().expand()``): built only when each instance runs,
    so what is known of it at parse is in its ``.partial()`` and literal ``.expand()`` arguments."""
    operator_class = getattr(task, "operator_class", None)
    return isinstance(operator_class, type) and issubclass(operator_class, MLStepOperator)


def _reads(value: Any, task_id: str, key: str) -> bool:
    """Whether an (unrendered) input reads ``task_id``'s output ``key``: an XComArg, or a list holding one."""
    if isinstance(value, list | tuple):
        return any(_reads(item, task_id, key) for item in value)
    operator, found = getattr(value, "operator", None), getattr(value, "key", None)
    return getattr(operator, "task_id", None) == task_id and found == key
