"""The private Airflow symbols the test harness touches (tests/support/runs.py), gated as ``sluice.compat`` gates
the platform's: the releases tested, a feature test, and what to do instead.

The package itself never uses them (tests/unit/test_compat.py: the guard scans sluice, the DAGs, the step package
and tests/support, and allows private uses only in ``sluice/compat.py`` and here). They let tests run, without a
scheduler, what only a scheduler runs: a backfill's runs, the runs due on a timer or an asset event.

``ENTRIES`` reuses ``sluice.compat.Private`` and its tested releases (``sluice.compat.AIRFLOW_CORE``, ...), so an
Airflow upgrade is judged the same way on both sides. tests/unit/test_harness_private.py proves each entry.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sluice import compat


class Feature(enum.Enum):
    """A harness helper that relies on private symbols (the value names the helper)."""

    BACKFILL = "tests.support.runs.backfill"
    CREATE_DUE_RUNS = "tests.support.runs.create_due_runs"
    RUN_EXISTING = "tests.support.runs.run_existing"

    def __str__(self) -> str:
        return self.value


class Unsupported(RuntimeError):
    """A harness helper cannot work on this Airflow; the message says which symbol and what instead."""


def _params(function: Callable[..., Any], *names: str) -> None:
    found = inspect.signature(function).parameters
    missing = [name for name in names if name not in found]
    if missing:
        raise compat.Missing(f"{getattr(function, '__qualname__', function)} no longer takes {', '.join(missing)}")


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
    code = inspect.unwrap(DAG.test).__code__
    if not {"airflow.models.dagrun", "get_or_create_dagrun"} <= set(code.co_names):
        raise compat.Missing("DAG.test no longer imports get_or_create_dagrun from airflow.models.dagrun when it runs")
    if "get_or_create_dagrun" in vars(inspect.getmodule(inspect.unwrap(DAG.test))):
        raise compat.Missing(
            f"{DAG.test.__module__} binds get_or_create_dagrun at import, so DAG.test would not see ours"
        )


ENTRIES = (
    compat.Private(
        "airflow.models.backfill._create_backfill",
        "what `airflow backfill create` calls to create a backfill's runs",
        Feature.BACKFILL,
        (compat.AIRFLOW_CORE,),
        "`airflow backfill create` (the CLI, in a subprocess)",
        _probe_create_backfill,
    ),
    compat.Private(
        "airflow.jobs.scheduler_job_runner.SchedulerJobRunner._create_dagruns_for_dags",
        "one pass of the scheduler's run creation (timer and asset-triggered runs)",
        Feature.CREATE_DUE_RUNS,
        (compat.AIRFLOW_CORE,),
        "none in-process: it stops with this reason; a scheduler (`sluice up`) creates such runs",
        _probe_create_dagruns,
    ),
    compat.Private(
        "airflow.models.dagrun.get_or_create_dagrun, as DAG.test imports it",
        "DAG.test's run factory (a fresh manual run), replaced to hand DAG.test an existing run",
        Feature.RUN_EXISTING,
        (compat.AIRFLOW_CORE, compat.TASK_SDK),
        "none in-process: it stops with this reason; a scheduler (`sluice up`) runs such runs",
        _probe_get_or_create_dagrun,
    ),
)


def entries(feature: Feature) -> tuple[compat.Private, ...]:
    if not isinstance(feature, Feature):
        raise TypeError(f"tests.support.airflow_private knows features by its Feature enum, not {feature!r}")
    return tuple(entry for entry in ENTRIES if entry.feature is feature)


def problem(feature: Feature) -> str | None:
    """Why ``feature`` must take its fallback on this installation, or None when its symbols check out."""
    for entry in entries(feature):
        found = entry.problem()
        if found is not None:
            return found
    return None


def require(feature: Feature) -> None:
    """Stop with ``Unsupported`` (the symbol, why, and what instead) where ``feature``'s symbols do not check out."""
    for entry in entries(feature):
        why = entry.problem()
        if why is not None:
            raise Unsupported(f"{feature} needs {entry.symbol}, which does not check out ({why}); {entry.fallback}")


# ---- accessors: the only places the harness uses the symbols -------------------------------------------------


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
