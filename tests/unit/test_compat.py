"""sluice.compat: every private Airflow symbol Sluice touches checks out on the pinned Airflow, a removed or changed
one is reported by name, and no private Airflow name is used anywhere else in the package."""

from __future__ import annotations

import ast
import importlib
import logging
import re
from pathlib import Path

import pytest
from sluice import compat

PACKAGE = Path(compat.__file__).parent
# Private-looking names in the package that are not Airflow's.
NOT_AIRFLOW = {
    "_cache": "the step cache's folder in the artifact store (sluice.cache)",
    "_replace": "a named tuple's public method (urllib's SplitResult)",
}


@pytest.mark.parametrize("entry", compat.ENTRIES, ids=lambda entry: entry.symbol.split(",")[0].rsplit(".", 1)[-1])
def test_each_private_symbol_checks_out_on_the_pinned_airflow(entry: compat.Private) -> None:
    """An Airflow upgrade that removes or changes one of them fails here, naming it."""
    assert entry.problem() is None


REMOVALS = [
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_monitor_subprocess", compat.EXIT_WAKEUP),
    ("airflow.sdk.execution_time.supervisor:WatchedSubprocess", "_service_subprocess", compat.EXIT_WAKEUP),
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_on_child_started", compat.START_HEARTBEAT),
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_last_heartbeat_attempt", compat.START_HEARTBEAT),
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_last_successful_heartbeat", compat.START_HEARTBEAT),
    ("airflow.dag_processing.dagbag", "BundleDagBag", compat.DAG_CACHE),
    ("airflow.sdk.execution_time.context", "_get_variable", compat.DAG_CACHE),
    ("airflow.sdk.execution_time.context", "_async_get_connection", compat.DAG_CACHE),
    ("airflow.sdk.definitions.context", "_AIRFLOW_PARSING_CONTEXT_DAG_ID", compat.DAG_CACHE),
    ("airflow.models.backfill", "_create_backfill", "sluice.runs.backfill"),
    ("airflow.jobs.scheduler_job_runner:SchedulerJobRunner", "_create_dagruns_for_dags", "sluice.runs.create_due_runs"),
    ("airflow.models.dagrun", "get_or_create_dagrun", "sluice.runs.run_existing"),
    (
        "airflow.sdk.definitions._internal.expandinput:DictOfListsExpandInput",
        "value",
        "sluice.policy mapped-task checks",
    ),
]


def owner(path: str) -> object:
    module, _, name = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, name) if name else found


@pytest.mark.parametrize(("where", "name", "feature"), REMOVALS, ids=[name for _, name, _ in REMOVALS])
def test_a_removed_symbol_is_reported_by_name(
    where: str, name: str, feature: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert compat.problem(feature) is None
    monkeypatch.delattr(owner(where), name)
    found = compat.problem(feature)
    assert found is not None and name in found, found


def test_a_task_runner_that_binds_bundle_dag_bag_at_import_would_not_see_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing import dagbag
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "BundleDagBag", dagbag.BundleDagBag, raising=False)
    assert "binds BundleDagBag at import" in (compat.problem(compat.DAG_CACHE) or "")


def test_a_changed_signature_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    def monitor(self: object, deadline: float) -> None:
        pass

    monkeypatch.setattr(ActivitySubprocess, "_monitor_subprocess", monitor)
    assert "takes arguments now" in (compat.problem(compat.EXIT_WAKEUP) or "")


@pytest.mark.parametrize(
    ("distribution", "version", "feature"),
    [
        ("apache-airflow-core", "3.4.0", compat.DAG_CACHE),
        ("apache-airflow-core", "3.2.1", "sluice.runs.backfill"),
        ("apache-airflow-task-sdk", "1.4.0rc1", compat.START_HEARTBEAT),
        ("apache-airflow-task-sdk", "2.0.0", compat.EXIT_WAKEUP),
    ],
)
def test_an_airflow_outside_the_tested_range_is_refused_naming_the_version(
    distribution: str, version: str, feature: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda d: version if d == distribution else real(d))
    found = compat.problem(feature) or ""
    assert f"{distribution} {version} is outside the range Sluice was tested on" in found, found


def test_a_patch_release_inside_the_range_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compat.installed_version
    monkeypatch.setattr(compat, "installed_version", lambda d: "3.3.9" if d == "apache-airflow-core" else real(d))
    assert compat.problem(compat.DAG_CACHE) is None


def test_a_runs_helper_stops_with_the_symbol_and_what_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    monkeypatch.delattr(SchedulerJobRunner, "_create_dagruns_for_dags")
    with pytest.raises(compat.Unsupported, match=r"_create_dagruns_for_dags.*a scheduler \(`sluice up`\)"):
        compat.require("sluice.runs.create_due_runs")


def test_without_expand_input_value_mapped_checks_wait_for_run_time_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput
    from sluice import policy

    from tests.unit.test_policy import mapped_step

    task = mapped_step(expand={"profile": ["default", "huge"]})
    assert policy.mapped_keys(task) == {"profile"}
    monkeypatch.delattr(DictOfListsExpandInput, "value")
    compat._expand_input_problem.cache_clear()
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert policy.mapped_keys(task) == set()
        assert policy.literal_profiles(task) == [("default", "the default")]
    compat._expand_input_problem.cache_clear()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "DictOfListsExpandInput" in warnings[0].getMessage()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"


def private_names_outside_compat() -> dict[str, set[str]]:
    """Private names the package uses (attributes, imports from Airflow, identifier strings such as getattr's)
    that it does not define itself, with where; compat.py, where they belong, is left out."""
    defined: set[str] = set()
    used: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            # Attributes a Sluice class sets on its own instances are Sluice's.
            stored = (n for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store))
            defined.update(n.attr for n in stored)
        where = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow"):
                names = [(alias.name, True) for alias in node.names]
            elif isinstance(node, ast.Attribute):
                names = [(node.attr, False)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names = [(node.value, True)]  # a name looked up by string is never one Sluice defines
            else:
                names = []
            for name, always in names:
                if _private(name) and (always or name not in defined) and name not in NOT_AIRFLOW:
                    used.setdefault(name, set()).add(f"{where}:{node.lineno}")
    return used


def test_no_private_airflow_name_is_used_outside_compat() -> None:
    named = " ".join(entry.symbol for entry in compat.ENTRIES)
    unlisted = {
        name: sorted(where)
        for name, where in private_names_outside_compat().items()
        if not re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", named)
    }
    assert not unlisted, f"list these in sluice.compat (with a version range, feature test and fallback): {unlisted}"


def test_dag_test_takes_its_run_from_the_factory_only_inside_the_block() -> None:
    from airflow.models import dagrun

    original = dagrun.get_or_create_dagrun

    def factory(**_: object) -> None:
        raise AssertionError("not called here")

    with pytest.raises(RuntimeError), compat.dag_test_run(factory):
        assert dagrun.get_or_create_dagrun is factory
        raise RuntimeError("the run failed")
    assert dagrun.get_or_create_dagrun is original


def test_shipped_code_uses_no_test_doubles() -> None:
    """unittest.mock belongs to tests; shipped code uses a supported path or a named, tested compat entry."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.name}:{node.lineno} {m}" for m in modules if m.split(".")[0] == "unittest"]
    assert not found


def test_the_architecture_page_lists_every_entry_and_every_worker_module() -> None:
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    symbols = [entry.symbol.split(",")[0].split(" ")[0].rsplit(".", 1)[-1] for entry in compat.ENTRIES]
    assert [name for name in symbols if name not in doc] == []
    modules = [p.stem for p in (PACKAGE / "worker").glob("*.py") if p.stem != "__init__"]
    assert [m for m in modules if f"`sluice.worker.{m}`" not in doc] == []
