"""Every private Airflow symbol Sluice touches, the versions it was tested on, a feature test and a fallback.

Airflow's private code changes without notice (the supervisor's heartbeat fields were renamed once). So a
feature that needs one of these symbols asks ``problem(feature)`` first: the installed distribution must be in
the range Sluice was tested on, and the symbol must still look as it did (a feature test: it exists, with the
signature or the lookup Sluice relies on). With a problem the feature takes its fallback: the worker patches
are not installed (the worker runs stock Airflow, ``sluice.worker.patches`` logs why), the cluster policy's
check of literal mapped profiles is skipped, and the ``sluice.runs`` helpers take Airflow's CLI or stop with
the reason. ``ENTRIES`` is the list (docs/architecture.md prints it); tests/unit/test_compat.py proves that each
entry passes on the pinned Airflow and that no other private Airflow name is used outside this module.

No longer used (a supported path replaced it): the KubernetesPodOperator's ``_killed`` flag (the kubernetes
launcher records its own kill), ``unittest.mock`` around ``get_or_create_dagrun`` (see ``dag_test_run``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None (a function so tests can pretend an upgrade)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """3.4.0rc1 → (3, 4, 0): pre-releases of a version count as that version."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("rc")[0])[:3])


@dataclass(frozen=True)
class Versions:
    """The range of one distribution a symbol was tested on: ``minimum <= version < below``."""

    distribution: str
    minimum: tuple[int, ...]
    below: tuple[int, ...]
    tested: str  # what the tests ran on

    @property
    def label(self) -> str:
        low, high = (".".join(map(str, part)) for part in (self.minimum, self.below))
        return f"{self.distribution} >={low},<{high} (tested on {self.tested})"

    def problem(self) -> str | None:
        version = installed_version(self.distribution)
        if version is None:
            return f"{self.distribution} is not installed"
        if not self.minimum <= _release(version) < self.below:
            return f"{self.distribution} {version} is outside the range Sluice was tested on ({self.label})"
        return None


AIRFLOW_CORE = Versions("apache-airflow-core", (3, 3), (3, 4), "3.3.2")
TASK_SDK = Versions("apache-airflow-task-sdk", (1, 3), (1, 4), "1.3.2, Airflow 3.3.2's")


class Missing(Exception):
    """A feature test failed: the symbol is gone or no longer looks as Sluice expects."""


@dataclass(frozen=True)
class Private:
    """One private Airflow symbol: what it is, who uses it, where it was tested, how to check it, what instead."""

    symbol: str
    what: str
    feature: str  # the Sluice feature that needs it (a worker patch's name, or a function)
    versions: Versions
    fallback: str
    probe: Callable[[], None]  # raises (Missing, AttributeError, ImportError, ...) when the symbol is not usable

    def problem(self) -> str | None:
        outside = self.versions.problem()
        if outside is not None:
            return outside
        try:
            self.probe()
        except Missing as exc:
            return str(exc)
        except Exception as exc:  # any failure of a feature test means: do not rely on the symbol
            return f"{type(exc).__name__}: {exc}"
        return None


def _params(function: Callable[..., Any], *names: str) -> None:
    """``function`` accepts these parameters by name."""
    found = inspect.signature(function).parameters
    missing = [name for name in names if name not in found]
    if missing:
        raise Missing(f"{getattr(function, '__qualname__', function)} no longer takes {', '.join(missing)}")


def _imports_at_call_time(function: Callable[..., Any], module: str, name: str) -> None:
    """``function`` imports ``name`` from ``module`` when it runs, so replacing the module attribute reaches it."""
    code = inspect.unwrap(function).__code__
    if not {module, name} <= set(code.co_names):
        raise Missing(f"{function.__qualname__} no longer imports {name} from {module} when it runs")
    if name in vars(inspect.getmodule(inspect.unwrap(function))):
        raise Missing(f"{function.__module__} binds {name} at import, so {function.__qualname__} would not see ours")


# ---- the worker patches (sluice.worker.patches) ---------------------------------------------------------------


def _supervisor() -> type:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    return ActivitySubprocess


def _probe_monitor_subprocess() -> None:
    if list(inspect.signature(_supervisor()._monitor_subprocess).parameters) != ["self"]:  # type: ignore[attr-defined]
        raise Missing("ActivitySubprocess._monitor_subprocess takes arguments now")


def _probe_selector_protocol() -> None:
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    if "selector" not in {field.name for field in getattr(WatchedSubprocess, "__attrs_attrs__", ())}:
        raise Missing("WatchedSubprocess has no selector field")
    names = set(WatchedSubprocess._service_subprocess.__code__.co_varnames)
    if not {"socket_handler", "on_close"} <= names:
        raise Missing("WatchedSubprocess._service_subprocess no longer reads (handler, on_close) from key.data")


def _probe_on_child_started() -> None:
    _params(_supervisor()._on_child_started, "self", "ti", "dag_rel_path", "bundle_info")  # type: ignore[attr-defined]


def _probe_heartbeat_fields() -> None:
    # ActivitySubprocess is a slotted attrs class: each field is a descriptor on the class.
    for name in ("_last_heartbeat_attempt", "_last_successful_heartbeat"):
        if not hasattr(_supervisor(), name):
            raise Missing(f"ActivitySubprocess has no field {name}")


def _probe_bundle_dag_bag() -> None:
    from airflow.dag_processing import dagbag
    from airflow.sdk.execution_time import task_runner

    _params(dagbag.BundleDagBag, "bundle_path")
    _params(dagbag.DagBag, "dag_folder", "safe_mode", "load_op_links", "bundle_name")
    if not issubclass(dagbag.BundleDagBag, dagbag.DagBag):
        raise Missing("BundleDagBag is no longer a DagBag")
    _imports_at_call_time(task_runner.parse, "airflow.dag_processing.dagbag", "BundleDagBag")


RUNTIME_CALLS = (
    "_get_variable",
    "_get_variable_keys",
    "_set_variable",
    "_delete_variable",
    "_get_connection",
    "_async_get_connection",
)


def _probe_runtime_calls() -> None:
    from airflow.sdk.execution_time import context

    for name in RUNTIME_CALLS:
        if not callable(getattr(context, name, None)):
            raise Missing(f"airflow.sdk.execution_time.context.{name} is gone")


def _probe_parsing_context() -> None:
    parsing_context_env()


def _probe_workload() -> None:
    from airflow.executors.workloads import ExecuteTask
    from airflow.providers.celery.executors.celery_executor_utils import execute_workload

    if not {"dag_rel_path", "bundle_info", "ti"} <= set(ExecuteTask.model_fields):
        raise Missing("ExecuteTask no longer has dag_rel_path, bundle_info and ti")
    if execute_workload.name != "execute_workload":
        raise Missing(f"the Celery provider's task is called {execute_workload.name!r}, not 'execute_workload'")


DAG_CACHE, EXIT_WAKEUP, START_HEARTBEAT = "dag-cache", "exit-wakeup", "start-heartbeat"
STOCK = "not installed: the worker runs Airflow's own code"

# ---- sluice.runs and the cluster policy ---------------------------------------------------------------------


def _probe_create_backfill() -> None:
    from airflow.models import backfill

    _params(
        backfill._create_backfill,
        *("dag_id", "from_date", "to_date", "max_active_runs", "reverse", "dag_run_conf", "triggering_user_name"),
    )


def _probe_create_dagruns() -> None:
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    _params(SchedulerJobRunner._create_dagruns_for_dags, "self", "guard", "session")


def _probe_get_or_create_dagrun() -> None:
    from airflow.models import dagrun
    from airflow.sdk.definitions.dag import DAG

    _params(dagrun.get_or_create_dagrun, "dag", "session", "start_date")
    _imports_at_call_time(DAG.test, "airflow.models.dagrun", "get_or_create_dagrun")


def _probe_expand_input_value() -> None:
    from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput, ListOfDictsExpandInput

    for kind in (DictOfListsExpandInput, ListOfDictsExpandInput):
        if not hasattr(kind, "value"):
            raise Missing(f"{kind.__name__} has no value field")


ENTRIES: tuple[Private, ...] = (
    Private(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._monitor_subprocess",
        "the task supervisor's select loop, until its task process exits",
        EXIT_WAKEUP,
        TASK_SDK,
        f"{STOCK}: the supervisor notices the exit at its next select() timeout",
        _probe_monitor_subprocess,
    ),
    Private(
        "airflow.sdk.execution_time.supervisor.WatchedSubprocess.selector and _service_subprocess",
        "the selector the loop waits on; each key's data is a (read handler, on-close) pair",
        EXIT_WAKEUP,
        TASK_SDK,
        STOCK,
        _probe_selector_protocol,
    ),
    Private(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._on_child_started",
        "the supervisor's start of a task: PATCH …/run, then the StartupDetails message",
        START_HEARTBEAT,
        TASK_SDK,
        f"{STOCK}: one extra PUT …/heartbeat per task",
        _probe_on_child_started,
    ),
    Private(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._last_heartbeat_attempt, _last_successful_heartbeat",
        "the supervisor's heartbeat clock",
        START_HEARTBEAT,
        TASK_SDK,
        STOCK,
        _probe_heartbeat_fields,
    ),
    Private(
        "airflow.dag_processing.dagbag.BundleDagBag, as airflow.sdk.execution_time.task_runner.parse imports it",
        "the DAG bag the task process parses its DAG file with, looked up on its module when the task starts",
        DAG_CACHE,
        AIRFLOW_CORE,
        f"{STOCK}: every task parses its DAG file",
        _probe_bundle_dag_bag,
    ),
    Private(
        "airflow.sdk.execution_time.context." + ", ".join(RUNTIME_CALLS),
        "what a DAG file's top-level code reaches Variables and Connections through",
        DAG_CACHE,
        TASK_SDK,
        STOCK,
        _probe_runtime_calls,
    ),
    Private(
        "airflow.sdk.definitions.context._AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID",
        "the environment variables behind get_parsing_context(), set by the task runner around its parse",
        DAG_CACHE,
        TASK_SDK,
        STOCK,
        _probe_parsing_context,
    ),
    Private(
        "airflow.executors.workloads.ExecuteTask fields in the Celery provider's execute_workload message",
        "where the pool process reads the task's DAG file and bundle before the fork",
        DAG_CACHE,
        AIRFLOW_CORE,
        STOCK,
        _probe_workload,
    ),
    Private(
        "airflow.models.backfill._create_backfill",
        "what `airflow backfill create` calls to create a backfill's runs",
        "sluice.runs.backfill",
        AIRFLOW_CORE,
        "`airflow backfill create` (the CLI, in a subprocess)",
        _probe_create_backfill,
    ),
    Private(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._create_dagruns_for_dags",
        "one pass of the scheduler's run creation (timer and asset-triggered runs)",
        "sluice.runs.create_due_runs",
        AIRFLOW_CORE,
        "none in-process: it stops with this reason; a scheduler (`sluice up`) creates such runs",
        _probe_create_dagruns,
    ),
    Private(
        "airflow.models.dagrun.get_or_create_dagrun, as DAG.test imports it",
        "DAG.test's run factory (a fresh manual run), replaced to hand DAG.test an existing run",
        "sluice.runs.run_existing",
        AIRFLOW_CORE,
        "none in-process: it stops with this reason; a scheduler (`sluice up`) runs such runs",
        _probe_get_or_create_dagrun,
    ),
    Private(
        "airflow.sdk.definitions._internal.expandinput.DictOfListsExpandInput.value, ListOfDictsExpandInput.value",
        "the literal values a mapped task's .expand() / .expand_kwargs() received",
        "sluice.policy mapped-task checks",
        TASK_SDK,
        "mapped profiles and keys are checked only when the task runs (one warning per process)",
        _probe_expand_input_value,
    ),
)


def entries(feature: str) -> list[Private]:
    return [entry for entry in ENTRIES if entry.feature == feature]


def problem(feature: str) -> str | None:
    """Why ``feature`` must take its fallback on this installation, or None when all its symbols check out."""
    for entry in entries(feature):
        found = entry.problem()
        if found is not None:
            return found
    return None


# ---- accessors: the only places the symbols are used -------------------------------------------------------


def parsing_context_env() -> tuple[str, str]:
    """The environment variables Airflow's parsing context lives in: (dag id, task id)."""
    from airflow.sdk.definitions import context

    names = (context._AIRFLOW_PARSING_CONTEXT_DAG_ID, context._AIRFLOW_PARSING_CONTEXT_TASK_ID)
    if not all(isinstance(name, str) and name for name in names):
        raise Missing("the parsing context's environment variable names are not strings")
    return names


def runtime_calls() -> Any:
    """The module whose ``RUNTIME_CALLS`` a DAG file's Variable and Connection access goes through."""
    from airflow.sdk.execution_time import context

    return context


def bundle_dag_bag_module() -> Any:
    """The module the task runner takes ``BundleDagBag`` from when a task starts."""
    from airflow.dag_processing import dagbag

    return dagbag


def create_backfill() -> Callable[..., Any]:
    from airflow.models import backfill

    return backfill._create_backfill


def create_dagruns_for_dags(runner: Any, guard: Any, session: Any) -> None:
    runner._create_dagruns_for_dags(guard, session)


@contextmanager
def dag_test_run(factory: Callable[..., Any]) -> Iterator[None]:
    """While inside, ``DAG.test()`` takes its run from ``factory`` instead of creating a fresh manual run."""
    from airflow.models import dagrun

    original = dagrun.get_or_create_dagrun
    dagrun.get_or_create_dagrun = factory
    try:
        yield
    finally:
        dagrun.get_or_create_dagrun = original


@functools.cache
def _expand_input_problem() -> str | None:
    found = problem("sluice.policy mapped-task checks")
    if found is not None:
        log.warning("Sluice checks literal mapped profiles only when the task runs (pid %s): %s", os.getpid(), found)
    return found


def expand_input_value(task: Any) -> Any:
    """What a mapped task's ``.expand()`` / ``.expand_kwargs()`` received, or None where that cannot be read."""
    expand_input = getattr(task, "expand_input", None)
    if expand_input is None or _expand_input_problem() is not None:
        return None
    return getattr(expand_input, "value", None)


class Unsupported(RuntimeError):
    """A ``sluice.runs`` helper cannot work on this Airflow; the message says which symbol and what instead."""


def require(feature: str) -> None:
    found = problem(feature)
    if found is not None:
        fallback = entries(feature)[0].fallback
        raise Unsupported(f"{feature} needs a private Airflow symbol that does not check out ({found}); {fallback}")
