"""Every private symbol of Airflow, its providers or Celery that Sluice touches: the exact releases of the
distribution that ships it which Sluice was tested on, a feature test, and a fallback.

Their private code changes without notice (the supervisor's heartbeat fields were renamed once). So a feature
that needs one of these symbols asks ``problem(Feature.X)`` first: each distribution that ships a symbol the
feature uses (apache-airflow-core, apache-airflow-task-sdk, apache-airflow-providers-celery,
apache-airflow-providers-cncf-kubernetes, celery) must be installed at a release Sluice was tested on
(``Tested``: the exact versions; requirements/lock.txt pins one of them), and the symbol must still look as it
did (a feature test: it exists, with the signature or the lookup Sluice relies on). With a problem the feature takes its
fallback: the worker patches are not installed (the worker runs stock Airflow, ``sluice.worker.patches`` logs
why), the cluster policy's check of literal mapped profiles is skipped, the kubernetes launcher runs the pod
through the operator's ``execute`` and reports no pending/exit reasons, a deferrable step pod is watched by the
worker instead of the triggerer, ``sluice status`` leaves out import errors and scheduler events, the local
autoscaler leaves pools at their size, and the worker keeps no pod deletion cost; where there is no fallback
(the offline pod spec, the pool-load index) the feature stops with the reason (``require``). (The test
harness's own private symbols, which the package never uses, are gated the same way in
tests/support/airflow_private.py.)
Features are an enum (``Feature``): a misspelt one fails at import and under mypy, and asking about anything
else raises ``TypeError``.

``ENTRIES`` is the list (docs/architecture.md prints ``markdown_table()``); tests/unit/test_compat.py proves
that each entry passes on the pinned versions, that the tested versions are the lock file's, and (an ast scan,
tests/unit/private_use.py) that no private module or attribute of Airflow, a provider or Celery is used outside
this module.

No longer used (a supported path replaced it): the KubernetesPodOperator's ``_killed`` flag (the kubernetes
launcher records its own kill).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib
import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sluice.errors import SluiceError

log = logging.getLogger(__name__)


class Feature(enum.Enum):
    """A Sluice feature that relies on private symbols (the value is how logs and the worker report name it)."""

    DAG_CACHE = "dag-cache"
    EXIT_WAKEUP = "exit-wakeup"
    START_HEARTBEAT = "start-heartbeat"
    POLICY_MAPPED_CHECKS = "sluice.policy mapped-task checks"
    KUBERNETES_EXECUTE = "kubernetes launcher: start and watch the step pod"
    KUBERNETES_READ_POD = "kubernetes launcher: why a pod is pending or ended"
    STATUS_TABLES = "sluice status: import errors and scheduler events"
    KUBERNETES_DEFER = "kubernetes launcher: the triggerer watches the step pod"
    KUBERNETES_POD_SPEC = "the step pod built offline (sluice pod-spec, the container launcher)"
    POOL_LOAD = "pool load: the pool-load index and the local autoscaler"
    POD_DELETION_COST = "worker pod deletion cost"
    DAG_TEST_POLL = "embedded runs: dag.test's wait between scheduling passes"
    EXECUTOR_END = "embedded runs: the LocalExecutor's stop at the run's end"

    def __str__(self) -> str:
        return self.value


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None (a function so tests can pretend an upgrade)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Tested:
    """The releases of one distribution Sluice's tests ran on: exact versions (requirements/lock.txt pins one)."""

    distribution: str
    versions: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError(f"{self.distribution}: name at least one tested version")

    @property
    def label(self) -> str:
        return f"{self.distribution} {' or '.join(self.versions)}"

    def problem(self) -> str | None:
        version = installed_version(self.distribution)
        if version is None:
            return f"{self.distribution} is not installed (Sluice was tested on {self.label})"
        if version not in self.versions:
            return (
                f"{self.distribution} {version} is not a release Sluice was tested on (tested: {self.label}; "
                "run tests/unit/test_compat.py and tests/worker on it, then add it to sluice.compat)"
            )
        return None


AIRFLOW_CORE = Tested("apache-airflow-core", ("3.3.2",))
TASK_SDK = Tested("apache-airflow-task-sdk", ("1.3.2",))
CELERY_PROVIDER = Tested("apache-airflow-providers-celery", ("3.26.0",))
KUBERNETES_PROVIDER = Tested("apache-airflow-providers-cncf-kubernetes", ("10.25.0",))
CELERY = Tested("celery", ("5.6.3",))
DISTRIBUTIONS = (AIRFLOW_CORE, TASK_SDK, CELERY_PROVIDER, KUBERNETES_PROVIDER, CELERY)


class Missing(SluiceError):
    """A feature test failed: the symbol is gone or no longer looks as Sluice expects."""


@dataclass(frozen=True)
class Private:
    """One private symbol: what it is, the feature that uses it, the distributions that ship it (at the releases
    Sluice was tested on), how to check it, and what Sluice does instead."""

    symbol: str
    what: str
    feature: enum.Enum  # a ``Feature``; the test harness's own entries (tests/support/airflow_private.py) have theirs
    tested: tuple[Tested, ...]  # every distribution that ships a part of the symbol (or of its lookup)
    fallback: str  # "none: ..." where there is none and the feature stops with the reason
    probe: Callable[[], None]  # raises (Missing, AttributeError, ImportError, ...) when the symbol is not usable

    def __post_init__(self) -> None:
        if not isinstance(self.feature, enum.Enum) or not self.tested:
            raise TypeError(f"{self.symbol}: give a sluice.compat.Feature and the distributions that ship it")

    def versions_problem(self) -> str | None:
        for tested in self.tested:
            found = tested.problem()
            if found is not None:
                return found
        return None

    def problem(self) -> str | None:
        outside = self.versions_problem()
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


def _probe_execute_task() -> None:
    from airflow.executors.workloads import ExecuteTask

    if not {"dag_rel_path", "bundle_info", "ti"} <= set(ExecuteTask.model_fields):
        raise Missing("ExecuteTask no longer has dag_rel_path, bundle_info and ti")


def _probe_execute_workload() -> None:
    from airflow.providers.celery.executors.celery_executor_utils import execute_workload

    if execute_workload.name != "execute_workload":
        raise Missing(f"the Celery provider's task is called {execute_workload.name!r}, not 'execute_workload'")
    if list(inspect.signature(execute_workload.run).parameters) != ["input"]:
        raise Missing("the Celery provider's execute_workload no longer takes the workload's JSON as its one argument")


STOCK = "not installed: the worker runs Airflow's own code"

# ---- the cluster policy ---------------------------------------------------------------------------------------


def _probe_expand_input_value() -> None:
    from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput, ListOfDictsExpandInput

    for kind in (DictOfListsExpandInput, ListOfDictsExpandInput):
        if not hasattr(kind, "value"):
            raise Missing(f"{kind.__name__} has no value field")


# ---- the kubernetes launcher (KubernetesPodOperator, cncf.kubernetes provider) -------------------------------


def _kubernetes_pod_operator() -> type:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator


def _probe_execute_sync_async() -> None:
    operator = _kubernetes_pod_operator()
    for name in ("execute_sync", "execute_async"):
        _params(getattr(operator, name), "self", "context")


def _probe_read_pod() -> None:
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

    if not isinstance(inspect.getattr_static(_kubernetes_pod_operator(), "pod_manager"), functools.cached_property):
        raise Missing("KubernetesPodOperator.pod_manager is no longer a cached property")
    _params(PodManager.read_pod, "self", "pod")


def _probe_trigger_reentry() -> None:
    operator: Any = _kubernetes_pod_operator()
    _params(operator.trigger_reentry, "self", "context", "event")
    # The provider defers with method_name="trigger_reentry": the task's own operator (MLStepOperator) answers to it.
    if "trigger_reentry" not in inspect.unwrap(operator.invoke_defer_method).__code__.co_consts:
        raise Missing("KubernetesPodOperator.invoke_defer_method no longer defers to trigger_reentry")


def _probe_build_pod_request_obj() -> None:
    operator: Any = _kubernetes_pod_operator()
    _params(operator.build_pod_request_obj, "self", "context", "dry_run")


# ---- pool load: Airflow's task_instance table, read with SQL -------------------------------------------------

# The columns sql/pool-load.sql, sql/pool-load-index.sql and the local autoscaler read, and the states they count.
TASK_INSTANCE_COLUMNS = ("state", "queue", "executor", "hostname")
POOL_LOAD_STATES = ("queued", "running")


def _probe_task_instance_table() -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState

    table = TaskInstance.__table__
    if table.name != "task_instance":
        raise Missing(f"TaskInstance is stored in {table.name}, not in task_instance")
    missing = [column for column in TASK_INSTANCE_COLUMNS if column not in table.columns]
    if missing:
        raise Missing(f"Airflow's task_instance table has no column {', '.join(missing)}")
    gone = [state for state in POOL_LOAD_STATES if state not in {s.value for s in TaskInstanceState}]
    if gone:
        raise Missing(f"Airflow no longer stores the task state {', '.join(gone)}")


# ---- the worker's pod deletion cost (sluice.worker.deletion_cost) --------------------------------------------


def _probe_active_requests() -> None:
    from celery.worker import state

    len(state.active_requests)  # a collection of the requests running now
    for function, name in ((state.task_accepted, "add_active_request"), (state.task_ready, "discard_active_request")):
        parameter = inspect.signature(function).parameters.get(name)
        if parameter is None or getattr(parameter.default, "__self__", None) is not state.active_requests:
            raise Missing(f"celery.worker.state.{function.__name__} no longer updates active_requests")


# ---- sluice status: Airflow's metadata tables, read with SQL ------------------------------------------------

# The columns ``sluice status`` reads from each table.
STATUS_TABLES = {
    "import_error": ("filename", "stacktrace"),
    "log": ("dttm", "event", "dag_id", "task_id", "run_id", "try_number", "extra"),
}


def _probe_status_tables() -> None:
    from airflow.models.errors import ParseImportError
    from airflow.models.log import Log

    for model in (ParseImportError, Log):
        table = model.__table__
        if table.name not in STATUS_TABLES:
            raise Missing(f"{model.__name__} is stored in {table.name}, not in {' or '.join(STATUS_TABLES)}")
        missing = [column for column in STATUS_TABLES[table.name] if column not in table.columns]
        if missing:
            raise Missing(f"Airflow's {table.name} table has no column {', '.join(missing)}")


def _probe_dag_test_sleep() -> None:
    code = inspect.unwrap(importlib.import_module("airflow.sdk.definitions.dag").DAG.test).__code__
    if "time" not in code.co_varnames or "sleep" not in code.co_names or 1 not in code.co_consts:
        raise Missing("DAG.test no longer waits between its scheduling passes with time.sleep(1)")


def _probe_local_executor_end() -> None:
    executor = importlib.import_module("airflow.executors.local_executor").LocalExecutor
    started, ends = executor.start.__code__.co_names, executor.end.__code__.co_names
    for name in ("workers", "activity_queue"):
        if name not in started or name not in ends:
            raise Missing(f"LocalExecutor.start/end no longer keep its task slots' {name}")
    if "put" not in ends or "join" not in ends:
        raise Missing("LocalExecutor.end no longer puts a stop message per task slot and joins it")


ENTRIES: tuple[Private, ...] = (
    Private(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._monitor_subprocess",
        "the task supervisor's select loop, until its task process exits",
        Feature.EXIT_WAKEUP,
        (TASK_SDK,),
        f"{STOCK}; the supervisor notices the exit at its next select() timeout",
        _probe_monitor_subprocess,
    ),
    Private(
        "airflow.sdk.execution_time.supervisor.WatchedSubprocess.selector and _service_subprocess",
        "the selector the loop waits on; each key's data is a (read handler, on-close) pair",
        Feature.EXIT_WAKEUP,
        (TASK_SDK,),
        STOCK,
        _probe_selector_protocol,
    ),
    Private(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._on_child_started",
        "the supervisor's start of a task: PATCH …/run, then the StartupDetails message",
        Feature.START_HEARTBEAT,
        (TASK_SDK,),
        f"{STOCK}; one extra PUT …/heartbeat per task",
        _probe_on_child_started,
    ),
    Private(
        "airflow.sdk.execution_time.supervisor.ActivitySubprocess._last_heartbeat_attempt, _last_successful_heartbeat",
        "the supervisor's heartbeat clock",
        Feature.START_HEARTBEAT,
        (TASK_SDK,),
        STOCK,
        _probe_heartbeat_fields,
    ),
    Private(
        "airflow.dag_processing.dagbag.BundleDagBag, as airflow.sdk.execution_time.task_runner.parse imports it",
        "the DAG bag the task process parses its DAG file with, looked up on its module when the task starts",
        Feature.DAG_CACHE,
        (AIRFLOW_CORE, TASK_SDK),
        f"{STOCK}; every task parses its DAG file",
        _probe_bundle_dag_bag,
    ),
    Private(
        "airflow.sdk.execution_time.context." + ", ".join(RUNTIME_CALLS),
        "what a DAG file's top-level code reaches Variables and Connections through",
        Feature.DAG_CACHE,
        (TASK_SDK,),
        STOCK,
        _probe_runtime_calls,
    ),
    Private(
        "airflow.sdk.definitions.context._AIRFLOW_PARSING_CONTEXT_DAG_ID, _AIRFLOW_PARSING_CONTEXT_TASK_ID",
        "the environment variables behind get_parsing_context(), set by the task runner around its parse",
        Feature.DAG_CACHE,
        (TASK_SDK,),
        STOCK,
        _probe_parsing_context,
    ),
    Private(
        "airflow.executors.workloads.ExecuteTask fields dag_rel_path, bundle_info, ti",
        "where the pool process reads the task's DAG file and bundle before the fork (the workload's JSON)",
        Feature.DAG_CACHE,
        (AIRFLOW_CORE,),
        STOCK,
        _probe_execute_task,
    ),
    Private(
        "airflow.providers.celery.executors.celery_executor_utils.execute_workload (its task name and argument)",
        "the Celery task a worker runs an Airflow task with; its one argument is the workload's JSON",
        Feature.DAG_CACHE,
        (CELERY_PROVIDER,),
        STOCK,
        _probe_execute_workload,
    ),
    Private(
        "airflow.sdk.definitions._internal.expandinput.DictOfListsExpandInput.value, ListOfDictsExpandInput.value",
        "the literal values a mapped task's .expand() / .expand_kwargs() received",
        Feature.POLICY_MAPPED_CHECKS,
        (TASK_SDK,),
        "mapped profiles and keys are checked only when the task runs (one warning per process)",
        _probe_expand_input_value,
    ),
    Private(
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator.execute_sync, execute_async",
        "the operator's own two halves of execute(), called directly by the kubernetes launcher",
        Feature.KUBERNETES_EXECUTE,
        (KUBERNETES_PROVIDER,),
        "the operator's public execute(context), which picks the same half (one warning per process)",
        _probe_execute_sync_async,
    ),
    Private(
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator.pod_manager, PodManager.read_pod",
        "the step pod as the API server has it now (its conditions and container states)",
        Feature.KUBERNETES_READ_POD,
        (KUBERNETES_PROVIDER,),
        "a failed step says the pod failed, without the pending or exit reason (one warning per process)",
        _probe_read_pod,
    ),
    Private(
        "Airflow's metadata tables import_error (filename, stacktrace) and log (dttm, event, dag_id, task_id, "
        "run_id, try_number, extra), read with SQL",
        "DAG files that do not import, and the scheduler's recent explanations of failed or re-queued tries",
        Feature.STATUS_TABLES,
        (AIRFLOW_CORE,),
        "`sluice status` leaves both out and says why (the API server's import errors: `airflow dags "
        "list-import-errors`)",
        _probe_status_tables,
    ),
    Private(
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator.trigger_reentry, as its deferral "
        "names it",
        "where a deferred pod comes back: the provider defers to it, the step's operator answers to it and hands on",
        Feature.KUBERNETES_DEFER,
        (KUBERNETES_PROVIDER,),
        "the worker watches the step pod (deferrable off; one warning per process); a step deferred before an "
        "upgrade fails with the reason",
        _probe_trigger_reentry,
    ),
    Private(
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator.build_pod_request_obj(context, "
        "dry_run=True)",
        "the pod the operator would submit, built offline for a step (its labels from a stand-in task context)",
        Feature.KUBERNETES_POD_SPEC,
        (KUBERNETES_PROVIDER,),
        "none: `sluice pod-spec` and the container launcher stop with the reason (the kubernetes launcher does not "
        "use it)",
        _probe_build_pod_request_obj,
    ),
    Private(
        "Airflow's metadata table task_instance (state, queue, executor, hostname; states queued, running), read "
        "with SQL",
        "each pool's queued and running tasks (sql/pool-load.sql, KEDA's query, and its index) and which local "
        "workers run one",
        Feature.POOL_LOAD,
        (AIRFLOW_CORE,),
        "none for the index: `python -m sluice.scaling ensure-index` (the migration Job) fails with the reason; "
        "the local autoscaler leaves every pool at its size and says why once",
        _probe_task_instance_table,
    ),
    Private(
        "celery.worker.state.active_requests, as task_accepted and task_ready update it",
        "the requests a Celery worker runs now (Celery's own bookkeeping, in the worker's main process)",
        Feature.POD_DELETION_COST,
        (CELERY,),
        "the worker keeps no pod deletion cost (scale-in may pick a busy pod, whose warm shutdown still lets its "
        "tasks finish)",
        _probe_active_requests,
    ),
    Private(
        "airflow.sdk.definitions.dag.DAG.test: its time.sleep(1) between scheduling passes",
        "dag.test()'s one-second wait whenever no task is ready to queue (use_executor=True: while tasks run)",
        Feature.DAG_TEST_POLL,
        (TASK_SDK,),
        "stock: each wait is 1 s, so each task a running one unblocks is queued up to 1 s later",
        _probe_dag_test_sleep,
    ),
    Private(
        "airflow.executors.local_executor.LocalExecutor.end, and the workers and activity_queue start() sets",
        "the executor's stop: a None on activity_queue per live task slot in workers, then each joined, unbounded",
        Feature.EXECUTOR_END,
        (AIRFLOW_CORE,),
        "stock: the run's end waits on every task slot with no timeout (one that never stops hangs the command)",
        _probe_local_executor_end,
    ),
)


def _by_feature() -> dict[Feature, tuple[Private, ...]]:
    found = {feature: tuple(entry for entry in ENTRIES if entry.feature is feature) for feature in Feature}
    unused = [feature.name for feature, listed in found.items() if not listed]
    if unused:  # a feature nothing needs would pass every check: the enum and ENTRIES must agree
        raise RuntimeError(f"sluice.compat.Feature {', '.join(unused)} has no entry in ENTRIES")
    return found


_ENTRIES_BY_FEATURE = _by_feature()


def entries(feature: Feature) -> tuple[Private, ...]:
    """The entries ``feature`` relies on; anything but a ``Feature`` (a string, a typo) raises ``TypeError``."""
    found = _ENTRIES_BY_FEATURE.get(feature)  # an Enum member equals only itself: a string is never a key
    if found is None:
        known = ", ".join(f"Feature.{f.name}" for f in Feature)
        raise TypeError(f"sluice.compat knows features by the Feature enum ({known}), not {feature!r}")
    return found


def _first_problem(feature: Feature) -> tuple[Private, str] | None:
    for entry in entries(feature):
        found = entry.problem()
        if found is not None:
            return entry, found
    return None


def problem(feature: Feature) -> str | None:
    """Why ``feature`` must take its fallback on this installation, or None when all its symbols check out."""
    found = _first_problem(feature)
    return None if found is None else found[1]


def versions_problem(feature: Feature) -> str | None:
    """``problem`` without the feature tests: only whether each distribution is at a tested release (cheap: no
    import of Airflow, for callers that test the symbol themselves, as ``sluice status`` does on the database)."""
    for entry in entries(feature):
        found = entry.versions_problem()
        if found is not None:
            return found
    return None


def markdown_table() -> str:
    """``ENTRIES`` as the table docs/architecture.md prints (a test keeps the two equal)."""
    rows = ["| symbol | Sluice feature | tested on | fallback |", "| --- | --- | --- | --- |"]
    for entry in ENTRIES:
        tested = ", ".join(tested.label for tested in entry.tested)
        rows.append(f"| `{entry.symbol}` | {entry.feature} | {tested} | {entry.fallback} |")
    return "\n".join(rows)


_warned: set[Feature] = set()


def fallback_problem(feature: Feature, found: str | None = None) -> str | None:
    """``problem(feature)``; the first time in a process it is not None, one warning names the feature, the
    reason and its fallback."""
    found = problem(feature) if found is None else found
    if found is not None and feature not in _warned:
        _warned.add(feature)
        fallback = entries(feature)[0].fallback
        log.warning("Sluice's %s takes its fallback (%s): %s", feature, fallback, found)
    return found


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


@contextlib.contextmanager
def dag_test_waits(wait: Callable[[float], None]) -> Iterator[bool]:
    """While inside, the ``time.sleep(1)`` with which ``DAG.test`` (on this thread) waits between scheduling
    passes calls ``wait(1)`` instead: the embedded run wakes it when a task ends rather than a second later.
    Every other sleep, and any on another thread, is left alone. Yields whether it took (with a problem the
    wait stays stock, after one warning)."""
    if fallback_problem(Feature.DAG_TEST_POLL) is not None:
        yield False
        return
    import threading
    import time

    sleep, runner = time.sleep, threading.get_ident()

    def waits(seconds: float) -> None:
        if seconds == 1 and threading.get_ident() == runner:
            wait(seconds)
        else:
            sleep(seconds)

    time.sleep = waits  # type: ignore[assignment]
    try:
        yield True
    finally:
        time.sleep = sleep


@contextlib.contextmanager
def bounded_local_executor_end(seconds: float, stop: Callable[[list[Any]], None]) -> Iterator[bool]:
    """While inside, ``LocalExecutor.end()`` (``dag.test()`` calls it once the run is over) gives each live task
    slot ``seconds`` to take its stop message, then hands those still alive to ``stop`` with a warning naming
    them (the embedded run terminates them); Airflow's own ``end()`` then finds none alive, closes the queues and
    reads the last results as usual. Stock, it joins each slot with no timeout. Yields whether it took (with a
    problem ``end()`` stays stock, after one warning)."""
    if fallback_problem(Feature.EXECUTOR_END) is not None:
        yield False
        return
    import time

    from airflow.executors.local_executor import LocalExecutor

    original = LocalExecutor.end

    def end(self: Any) -> None:
        alive = [proc for proc in self.workers.values() if proc.is_alive()]
        for _ in alive:
            self.activity_queue.put(None)  # Airflow's stop message: one per live slot, whichever takes it
        deadline = time.monotonic() + seconds
        for proc in alive:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [proc for proc in alive if proc.is_alive()]
        if stuck:
            pids = ", ".join(str(proc.pid) for proc in stuck)
            log.warning("task slot(s) pid %s did not stop within %.0f s of the run's end: stopping them", pids, seconds)
            stop(stuck)
        original(self)

    LocalExecutor.end = end  # type: ignore[method-assign]
    try:
        yield True
    finally:
        LocalExecutor.end = original  # type: ignore[method-assign]


@functools.cache
def _expand_input_problem() -> str | None:
    found = problem(Feature.POLICY_MAPPED_CHECKS)
    if found is not None:
        log.warning("Sluice checks literal mapped profiles only when the task runs (pid %s): %s", os.getpid(), found)
    return found


def expand_input_value(task: Any) -> Any:
    """What a mapped task's ``.expand()`` / ``.expand_kwargs()`` received, or None where that cannot be read."""
    expand_input = getattr(task, "expand_input", None)
    if expand_input is None or _expand_input_problem() is not None:
        return None
    return getattr(expand_input, "value", None)


# The supervisor method each worker patch replaces (``sluice.worker.supervisor_patch``).
SUPERVISOR_METHODS = {Feature.EXIT_WAKEUP: "_monitor_subprocess", Feature.START_HEARTBEAT: "_on_child_started"}


def replace_supervisor_method(feature: Feature, replacement: Callable[..., Any]) -> Callable[..., Any]:
    """Put ``replacement`` in place of the supervisor method ``feature`` replaces; returns Airflow's own."""
    supervisor, name = _supervisor(), SUPERVISOR_METHODS[feature]
    original: Callable[..., Any] = getattr(supervisor, name)
    setattr(supervisor, name, replacement)
    return original


def restore_supervisor_method(feature: Feature, original: Callable[..., Any]) -> None:
    setattr(_supervisor(), SUPERVISOR_METHODS[feature], original)


def count_start_as_heartbeat(supervisor: Any) -> None:
    """After a successful start: the supervisor's last heartbeat attempt is the start (its last success)."""
    supervisor._last_heartbeat_attempt = supervisor._last_successful_heartbeat


def run_pod(operator: Any, context: Any) -> Any:
    """Start the KubernetesPodOperator's pod and watch it (deferring, if the operator is deferrable and the
    provider's deferral comes back as tested: else nothing could resume the step, and the worker watches it)."""
    if operator.deferrable and fallback_problem(Feature.KUBERNETES_DEFER) is not None:
        operator.deferrable = False
    if fallback_problem(Feature.KUBERNETES_EXECUTE) is not None:
        return operator.execute(context)
    return operator.execute_async(context) if operator.deferrable else operator.execute_sync(context)


def resume_pod(operator: Any, context: Any, event: dict[str, Any]) -> Any:
    """Finish a deferred pod as the provider does when its trigger fired (a step deferred before an upgrade to an
    untested provider stops with ``Unsupported``)."""
    require(Feature.KUBERNETES_DEFER)
    return operator.trigger_reentry(context, event)


def pod_request(operator: Any, context: Any) -> Any:
    """The pod (a ``V1Pod``) the operator would submit for ``context``, built offline."""
    require(Feature.KUBERNETES_POD_SPEC)
    return operator.build_pod_request_obj(context, dry_run=True)


def running_celery_requests() -> int:
    """How many requests this Celery worker is running now (in its main process, for every pool type)."""
    from celery.worker import state

    return len(state.active_requests)


def pool_load_problem(conn: Any) -> str | None:
    """Why the pool-load query cannot be trusted on the metadata DB behind ``conn`` (a SQLAlchemy connection), or
    None: a tested apache-airflow-core, and task_instance has the columns it reads."""
    import sqlalchemy as sa

    found = versions_problem(Feature.POOL_LOAD)
    inspector = sa.inspect(conn)
    # No task_instance table at all is an unmigrated database, not a changed schema: the caller says so.
    if found is None and inspector.has_table("task_instance"):
        present = {column["name"] for column in inspector.get_columns("task_instance")}
        missing = [column for column in TASK_INSTANCE_COLUMNS if column not in present]
        if missing:
            found = f"the metadata DB's task_instance table has no column {', '.join(missing)}"
    return fallback_problem(Feature.POOL_LOAD, found) if found is not None else None


def read_pod(operator: Any) -> Any:
    """The operator's pod as the API server has it now, or None (no pod yet, or ``read_pod`` not as tested)."""
    pod = getattr(operator, "pod", None)
    if pod is None or fallback_problem(Feature.KUBERNETES_READ_POD) is not None:
        return None
    return operator.pod_manager.read_pod(pod)


def status_tables_problem(conn: Any) -> str | None:
    """Why ``sluice status`` cannot read Airflow's import_error and log tables through ``conn`` (a SQLAlchemy
    connection to the metadata DB), or None: a tested apache-airflow-core, and the columns are there."""
    import sqlalchemy as sa

    found = versions_problem(Feature.STATUS_TABLES)
    if found is None:
        inspector = sa.inspect(conn)
        for table, columns in STATUS_TABLES.items():
            present = (
                {column["name"] for column in inspector.get_columns(table)} if inspector.has_table(table) else set()
            )
            missing = [column for column in columns if column not in present]
            if missing:
                found = f"the metadata DB's {table} table has no column {', '.join(missing)}"
                break
    return fallback_problem(Feature.STATUS_TABLES, found) if found is not None else None


def import_errors(conn: Any) -> list[tuple[str, str | None]]:
    """(file, traceback) of each DAG file the dag-processor could not import, from the import_error table."""
    import sqlalchemy as sa

    rows = conn.execute(sa.text("SELECT filename, stacktrace FROM import_error ORDER BY filename")).all()
    return [(filename, stacktrace) for filename, stacktrace in rows]


def recent_task_events(conn: Any, events: list[str]) -> list[Any]:
    """The last hour's log rows (at most 10, newest first) with one of ``events`` (Postgres)."""
    import sqlalchemy as sa

    query = sa.text(
        "SELECT dttm, event, dag_id, task_id, run_id, try_number, extra FROM log "
        "WHERE event IN :events AND dttm > now() - interval '1 hour' ORDER BY dttm DESC LIMIT 10"
    ).bindparams(sa.bindparam("events", expanding=True))
    return list(conn.execute(query, {"events": events}).all())


class Unsupported(SluiceError, RuntimeError):
    """A feature without a fallback cannot work on this installation; the message says which symbol and why."""


def require(feature: Feature) -> None:
    """Stop with ``Unsupported`` (naming the symbol or the distribution, its version and the tested ones, and
    what to do instead) where ``feature`` has no fallback and its symbols do not check out."""
    found = _first_problem(feature)
    if found is not None:
        entry, why = found
        raise Unsupported(f"{feature} needs {entry.symbol}, which does not check out ({why}); {entry.fallback}")
