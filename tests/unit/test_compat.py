"""sluice.compat: every private symbol Sluice touches checks out on the pinned releases, a removed or changed
one is reported by name, an untested release of the distribution that ships it takes the fallback, features are
an enum, and no private module or attribute of Airflow, a provider or Celery is used anywhere else."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sluice import compat
from sluice.compat import Feature

from tests.support import airflow_private
from tests.support.symbols import owner
from tests.unit import private_use

PACKAGE = Path(compat.__file__).parent
REPO = PACKAGE.parents[1]
# The test harness's helpers too: tests/support/airflow_private.py is their one place for private symbols.
SCANNED = [PACKAGE, REPO / "dags", REPO / "images" / "ml-steps", REPO / "tests" / "support"]
ALLOWED = [PACKAGE / "compat.py", REPO / "tests" / "support" / "airflow_private.py"]


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    compat._warned.clear()
    yield
    compat._warned.clear()


@pytest.fixture
def airflow_logging() -> None:
    """Airflow configures logging when first imported, dropping the handlers on the root logger: import it while
    the test is set up, before caplog's handler for the test's call is attached (else a test run alone sees no log)."""
    importlib.import_module("airflow.providers.cncf.kubernetes.operators.pod")


def pretend(monkeypatch: pytest.MonkeyPatch, **versions: str) -> None:
    """``installed_version`` answers these versions (keys: distribution names with _ for -) and the rest as is."""
    real = compat.installed_version
    wanted = {name.replace("_", "-"): version for name, version in versions.items()}
    monkeypatch.setattr(compat, "installed_version", lambda d: wanted.get(d) or real(d))


@pytest.mark.parametrize("entry", compat.ENTRIES, ids=lambda entry: entry.symbol.split(",")[0].rsplit(".", 1)[-1])
def test_each_private_symbol_checks_out_on_the_pinned_releases(entry: compat.Private) -> None:
    """An upgrade that removes or changes one of them fails here, naming it."""
    assert entry.problem() is None


REMOVALS = [
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_monitor_subprocess", Feature.EXIT_WAKEUP),
    ("airflow.sdk.execution_time.supervisor:WatchedSubprocess", "_service_subprocess", Feature.EXIT_WAKEUP),
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_on_child_started", Feature.START_HEARTBEAT),
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_last_heartbeat_attempt", Feature.START_HEARTBEAT),
    ("airflow.sdk.execution_time.supervisor:ActivitySubprocess", "_last_successful_heartbeat", Feature.START_HEARTBEAT),
    ("airflow.dag_processing.dagbag", "BundleDagBag", Feature.DAG_CACHE),
    ("airflow.sdk.execution_time.context", "_get_variable", Feature.DAG_CACHE),
    ("airflow.sdk.execution_time.context", "_async_get_connection", Feature.DAG_CACHE),
    ("airflow.sdk.definitions.context", "_AIRFLOW_PARSING_CONTEXT_DAG_ID", Feature.DAG_CACHE),
    ("airflow.providers.celery.executors.celery_executor_utils", "execute_workload", Feature.DAG_CACHE),
    ("airflow.sdk.definitions._internal.expandinput:DictOfListsExpandInput", "value", Feature.POLICY_MAPPED_CHECKS),
    (
        "airflow.providers.cncf.kubernetes.operators.pod:KubernetesPodOperator",
        "execute_sync",
        Feature.KUBERNETES_EXECUTE,
    ),
    ("airflow.providers.cncf.kubernetes.utils.pod_manager:PodManager", "read_pod", Feature.KUBERNETES_READ_POD),
    ("airflow.models.log:Log", "__tablename__", Feature.STATUS_TABLES),
    (
        "airflow.providers.cncf.kubernetes.operators.pod:KubernetesPodOperator",
        "trigger_reentry",
        Feature.KUBERNETES_DEFER,
    ),
    (
        "airflow.providers.cncf.kubernetes.operators.pod:KubernetesPodOperator",
        "build_pod_request_obj",
        Feature.KUBERNETES_POD_SPEC,
    ),
    ("airflow.models.taskinstance:TaskInstance", "__tablename__", Feature.POOL_LOAD),
    ("celery.worker.state", "active_requests", Feature.POD_DELETION_COST),
]


# The test harness's own private uses (tests/support/airflow_private.py), gated the same way.
HARNESS_REMOVALS = [
    ("airflow.models.backfill", "_create_backfill", airflow_private.Feature.BACKFILL),
    (
        "airflow.jobs.scheduler_job_runner:SchedulerJobRunner",
        "_create_dagruns_for_dags",
        airflow_private.Feature.CREATE_DUE_RUNS,
    ),
    ("airflow.models.dagrun", "get_or_create_dagrun", airflow_private.Feature.RUN_EXISTING),
]


@pytest.mark.parametrize(
    ("where", "name", "feature"),
    [*REMOVALS, *HARNESS_REMOVALS],
    ids=[name for _, name, _ in [*REMOVALS, *HARNESS_REMOVALS]],
)
def test_a_removed_symbol_is_reported_by_name(
    where: str, name: str, feature: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = compat.problem if isinstance(feature, Feature) else airflow_private.problem
    assert problem(feature) is None
    if name == "__tablename__":  # a table that moved: the model's table is another one now
        table = owner(where).__table__
        monkeypatch.setattr(table, "name", "audit_log")
        name = "audit_log"
    else:
        monkeypatch.delattr(owner(where), name)
    found = problem(feature)
    assert found is not None and name in found, found


def test_a_task_runner_that_binds_bundle_dag_bag_at_import_would_not_see_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing import dagbag
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "BundleDagBag", dagbag.BundleDagBag, raising=False)
    assert "binds BundleDagBag at import" in (compat.problem(Feature.DAG_CACHE) or "")


def test_a_changed_signature_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    def monitor(self: object, deadline: float) -> None:
        pass

    monkeypatch.setattr(ActivitySubprocess, "_monitor_subprocess", monitor)
    assert "takes arguments now" in (compat.problem(Feature.EXIT_WAKEUP) or "")


# ---- features are an enum -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lookup", [compat.problem, compat.require, compat.entries, compat.versions_problem])
@pytest.mark.parametrize("name", ["sluice.runs.run_existin", "no-such-feature", "dag-cache"])
def test_a_feature_named_by_a_string_is_refused_not_passed(lookup: Any, name: str) -> None:
    """A typo used to find no entries, so problem() said None and require() passed: now it cannot be asked."""
    with pytest.raises(TypeError, match=r"Feature enum .*Feature\.DAG_CACHE"):
        lookup(name)


def test_every_feature_has_entries_and_every_entry_a_feature() -> None:
    assert all(compat.entries(feature) for feature in Feature)
    assert {entry.feature for entry in compat.ENTRIES} == set(Feature)
    with pytest.raises(TypeError, match="Feature"):
        compat.Private("x._y", "what", "dag-cache", (compat.AIRFLOW_CORE,), "none", lambda: None)  # type: ignore[arg-type]


def test_a_feature_without_entries_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "ENTRIES", tuple(e for e in compat.ENTRIES if e.feature is not Feature.STATUS_TABLES))
    with pytest.raises(RuntimeError, match="STATUS_TABLES has no entry"):
        compat._by_feature()


# ---- each symbol is gated on the distribution that ships it, at the releases tested -----------------------


def test_the_tested_releases_are_the_lock_files_pins_and_installed() -> None:
    """Bumping a pin in requirements/lock.txt without testing the new release (and adding it here) fails."""
    lock = REPO / "requirements" / "lock.txt"
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock.read_text(), re.MULTILINE))
    used = {tested for entry in compat.ENTRIES for tested in entry.tested}
    assert used == set(compat.DISTRIBUTIONS)
    for tested in compat.DISTRIBUTIONS:
        pinned = pins.get(tested.distribution)
        assert pinned in tested.versions, f"{lock.name} pins {tested.distribution}=={pinned}; compat: {tested.label}"
        assert compat.installed_version(tested.distribution) == pinned, "run `make setup`: the venv is not the lock"


# (distribution, an untested release, a feature whose symbol it ships)
UNTESTED = [
    ("apache-airflow-core", "3.3.3", Feature.DAG_CACHE),
    ("apache-airflow-core", "3.2.1", Feature.STATUS_TABLES),
    ("apache-airflow-task-sdk", "1.3.3", Feature.START_HEARTBEAT),
    ("apache-airflow-task-sdk", "1.3.2rc1", Feature.EXIT_WAKEUP),
    ("apache-airflow-task-sdk", "2.0.0", Feature.POLICY_MAPPED_CHECKS),
    ("apache-airflow-providers-celery", "3.26.1", Feature.DAG_CACHE),
    ("apache-airflow-providers-cncf-kubernetes", "10.25.1", Feature.KUBERNETES_EXECUTE),
    ("apache-airflow-providers-cncf-kubernetes", "10.24.0", Feature.KUBERNETES_READ_POD),
    ("apache-airflow-providers-cncf-kubernetes", "10.26.0", Feature.KUBERNETES_DEFER),
    ("apache-airflow-providers-cncf-kubernetes", "11.0.0", Feature.KUBERNETES_POD_SPEC),
    ("apache-airflow-core", "3.3.3", Feature.POOL_LOAD),
    ("celery", "5.7.0", Feature.POD_DELETION_COST),
]


@pytest.mark.parametrize(("distribution", "version", "feature"), UNTESTED, ids=[f"{d} {v}" for d, v, _ in UNTESTED])
def test_an_untested_release_is_refused_naming_the_distribution_its_version_and_the_tested_ones(
    distribution: str, version: str, feature: Feature, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend(monkeypatch, **{distribution: version})
    tested = next(t for t in compat.DISTRIBUTIONS if t.distribution == distribution)
    found = compat.problem(feature) or ""
    assert f"{distribution} {version} is not a release Sluice was tested on" in found, found
    assert f"tested: {tested.label}" in found, found


def test_the_celery_providers_release_gates_execute_workload_not_airflows(monkeypatch: pytest.MonkeyPatch) -> None:
    pretend(monkeypatch, apache_airflow_providers_celery="3.27.0")
    assert "apache-airflow-providers-celery 3.27.0" in (compat.problem(Feature.DAG_CACHE) or "")
    assert compat.problem(Feature.STATUS_TABLES) is None, "core's own symbols do not depend on the provider"


def test_the_kubernetes_providers_release_gates_the_pod_operator_not_airflows(monkeypatch: pytest.MonkeyPatch) -> None:
    pretend(monkeypatch, apache_airflow_core="3.3.3")
    assert compat.problem(Feature.KUBERNETES_EXECUTE) is None
    assert compat.problem(Feature.KUBERNETES_READ_POD) is None
    assert compat.problem(Feature.STATUS_TABLES) is not None


def test_a_distribution_that_is_not_installed_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = compat.installed_version
    monkeypatch.setattr(
        compat, "installed_version", lambda d: None if d == "apache-airflow-providers-celery" else real(d)
    )
    found = compat.problem(Feature.DAG_CACHE) or ""
    assert "apache-airflow-providers-celery is not installed (Sluice was tested on" in found, found


# ---- the fallbacks ----------------------------------------------------------------------------------------


class FakePodOperator:
    """What the launcher calls on a KubernetesPodOperator, recorded."""

    def __init__(self, deferrable: bool) -> None:
        self.deferrable = deferrable
        self.pod: object | None = "pod"
        self.calls: list[str] = []
        self.pod_manager = self

    def execute(self, context: object) -> None:
        self.calls.append("execute")

    def execute_sync(self, context: object) -> None:
        self.calls.append("execute_sync")

    def execute_async(self, context: object) -> None:
        self.calls.append("execute_async")

    def read_pod(self, pod: object) -> str:
        self.calls.append("read_pod")
        return f"remote {pod}"

    def trigger_reentry(self, context: object, event: dict[str, Any]) -> None:
        self.calls.append(f"trigger_reentry {event['status']}")

    def build_pod_request_obj(self, context: object, *, dry_run: bool = False) -> str:
        self.calls.append(f"build_pod_request_obj dry_run={dry_run}")
        return "built pod"


@pytest.mark.parametrize(("deferrable", "half"), [(False, "execute_sync"), (True, "execute_async")])
def test_the_launcher_runs_the_pod_through_the_tested_half_else_through_execute(
    deferrable: bool,
    half: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    airflow_logging: None,
) -> None:
    operator = FakePodOperator(deferrable)
    compat.run_pod(operator, {})
    assert operator.calls == [half]
    pretend(monkeypatch, apache_airflow_providers_cncf_kubernetes="11.0.0")
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        compat.run_pod(operator, {})
        compat.run_pod(operator, {})
    assert operator.calls == [half, "execute", "execute"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == (2 if deferrable else 1), warnings  # deferrable: the deferral's own fallback too
    assert all("apache-airflow-providers-cncf-kubernetes 11.0.0" in w for w in warnings), warnings


def test_without_trigger_reentry_as_tested_the_worker_watches_the_pod_and_a_resume_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, airflow_logging: None
) -> None:
    """Nothing could resume a deferred step: the worker watches it instead; a step that deferred before the
    upgrade stops naming the symbol."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    operator = FakePodOperator(deferrable=True)
    compat.resume_pod(operator, {}, {"status": "success"})
    monkeypatch.delattr(KubernetesPodOperator, "trigger_reentry")
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        compat.run_pod(operator, {})
    assert operator.calls == ["trigger_reentry success", "execute_sync"] and operator.deferrable is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the worker watches the step pod" in warnings[0], warnings
    with pytest.raises(
        compat.Unsupported, match=r"KubernetesPodOperator\.trigger_reentry.*has no attribute 'trigger_reentry'"
    ):
        compat.resume_pod(operator, {}, {"status": "success"})
    assert len(operator.calls) == 2


def test_the_offline_pod_is_built_only_on_a_tested_provider_else_it_stops_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    operator = FakePodOperator(False)
    assert compat.pod_request(operator, {}) == "built pod"
    assert operator.calls == ["build_pod_request_obj dry_run=True"]
    pretend(monkeypatch, apache_airflow_providers_cncf_kubernetes="11.0.0")
    with pytest.raises(compat.Unsupported) as raised:
        compat.pod_request(operator, {})
    message = str(raised.value)
    assert "build_pod_request_obj" in message and "apache-airflow-providers-cncf-kubernetes 11.0.0" in message
    assert "`sluice pod-spec` and the container launcher stop" in message, message
    assert len(operator.calls) == 1


def test_on_an_untested_celery_the_worker_keeps_no_deletion_cost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, airflow_logging: None
) -> None:
    from sluice.worker import deletion_cost

    monkeypatch.setenv("POD_NAME", "worker-0")
    monkeypatch.setenv("POD_NAMESPACE", "ml")
    monkeypatch.delenv("SLUICE_POD_DELETION_COST", raising=False)
    keeper = deletion_cost.from_environment(lambda: lambda name, namespace, body: None)
    assert keeper is not None and keeper.count() == 0, "no worker here: Celery's own count of running requests"
    pretend(monkeypatch, celery="5.7.0")
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert deletion_cost.from_environment(lambda: lambda name, namespace, body: None) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "celery 5.7.0 is not a release" in warnings[0], warnings
    assert "keeps no pod deletion cost" in warnings[0], warnings


def test_the_pods_reasons_are_read_only_on_a_tested_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    operator = FakePodOperator(False)
    assert compat.read_pod(operator) == "remote pod"
    operator.pod = None
    assert compat.read_pod(operator) is None, "no pod yet"
    operator.pod = "pod"
    pretend(monkeypatch, apache_airflow_providers_cncf_kubernetes="10.26.0")
    assert compat.read_pod(operator) is None
    assert operator.calls == ["read_pod"]


def test_the_start_counts_as_the_last_heartbeat_attempt() -> None:
    class Supervisor:
        _last_successful_heartbeat = 12.5
        _last_heartbeat_attempt = 0.0

    supervisor = Supervisor()
    compat.count_start_as_heartbeat(supervisor)
    assert supervisor._last_heartbeat_attempt == 12.5


def test_supervisor_methods_are_replaced_and_restored_by_feature() -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    before = ActivitySubprocess._on_child_started

    def replacement(self: object) -> None:
        pass

    original = compat.replace_supervisor_method(Feature.START_HEARTBEAT, replacement)
    try:
        assert original is before and ActivitySubprocess._on_child_started is replacement
    finally:
        compat.restore_supervisor_method(Feature.START_HEARTBEAT, original)
    assert ActivitySubprocess._on_child_started is before


def status_db(tmp_path: Path, log_columns: str) -> Any:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE import_error (id INTEGER, filename TEXT, stacktrace TEXT)"))
        conn.execute(sa.text(f"CREATE TABLE log ({log_columns})"))
        conn.execute(sa.text("INSERT INTO import_error VALUES (1, 'broken.py', 'Traceback ...')"))
    return engine


LOG_COLUMNS = "dttm TEXT, event TEXT, dag_id TEXT, task_id TEXT, run_id TEXT, try_number INTEGER, extra TEXT"


def test_status_reads_airflows_tables_where_they_are_as_tested(tmp_path: Path) -> None:
    engine = status_db(tmp_path, LOG_COLUMNS)
    with engine.connect() as conn:
        assert compat.status_tables_problem(conn) is None
        assert compat.import_errors(conn) == [("broken.py", "Traceback ...")]


def test_status_leaves_the_tables_out_when_a_column_is_gone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = status_db(tmp_path, LOG_COLUMNS.replace("extra TEXT", "payload TEXT"))
    with caplog.at_level(logging.WARNING, logger=compat.__name__), engine.connect() as conn:
        found = compat.status_tables_problem(conn)
    assert found == "the metadata DB's log table has no column extra"
    assert [r.getMessage() for r in caplog.records if "sluice status" in r.getMessage()], caplog.records


def task_instance_db(tmp_path: Path, columns: str) -> Any:
    import sqlalchemy as sa

    tmp_path.mkdir(exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE task_instance (id TEXT, {columns})"))
    return engine


TI_COLUMNS = "state TEXT, queue TEXT, executor TEXT, hostname TEXT"


def test_the_pool_load_query_is_trusted_only_where_task_instance_is_as_tested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, airflow_logging: None
) -> None:
    with task_instance_db(tmp_path / "tested", TI_COLUMNS).connect() as conn:
        assert compat.pool_load_problem(conn) is None
    with (
        caplog.at_level(logging.WARNING, logger=compat.__name__),
        task_instance_db(tmp_path / "moved", TI_COLUMNS.replace("executor", "executor_name")).connect() as conn,
    ):
        assert compat.pool_load_problem(conn) == "the metadata DB's task_instance table has no column executor"
    assert any("pool-load index" in r.getMessage() for r in caplog.records), caplog.records
    pretend(monkeypatch, apache_airflow_core="3.3.3")
    with task_instance_db(tmp_path / "untested", TI_COLUMNS).connect() as conn:
        assert "apache-airflow-core 3.3.3 is not a release" in (compat.pool_load_problem(conn) or "")


def test_status_leaves_the_tables_out_on_an_untested_airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend(monkeypatch, apache_airflow_core="3.4.0")
    with status_db(tmp_path, LOG_COLUMNS).connect() as conn:
        assert "apache-airflow-core 3.4.0 is not a release" in (compat.status_tables_problem(conn) or "")


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


# ---- the guard: no private use outside sluice.compat ------------------------------------------------------


def test_no_private_module_or_attribute_is_used_outside_compat() -> None:
    uses = private_use.scan(SCANNED, REPO, allowed=ALLOWED)
    assert not uses, "\n".join(map(str, uses))


def test_the_guard_scans_compat_when_told_to() -> None:
    """compat.py itself is full of such uses: the scan sees them once it is not left out."""
    uses = private_use.scan([PACKAGE], REPO)
    assert any(use.path.endswith("compat.py") and "_monitor_subprocess" in use.what for use in uses), uses


FIXTURE = """
import os
import celery._state
from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput
from airflow.models.backfill import _create_backfill
from airflow.models import backfill
from airflow.sdk.execution_time.supervisor import ActivitySubprocess


def _on_child_started(self, *args):
    self._last_heartbeat_attempt = self._last_successful_heartbeat


class Launcher(ActivitySubprocess):
    def __init__(self):
        self._operator = None
        self._killed = False

    def run(self, operator):
        backfill._create_backfill()
        operator._killed
        getattr(operator, "_killed_by_airflow")
        self._operator, self._killed
        return self._monitor_subprocess()


PATCH = ("_on_child_started_by_name",)
ActivitySubprocess._on_child_started = _on_child_started
os._exit(0)
"""


def test_the_guard_reports_each_private_use_in_a_fixture_with_its_line_and_the_fix() -> None:
    uses = private_use.scan_source(FIXTURE, "fixture.py")
    found = [(use.line, use.what.split(",")[0]) for use in uses]
    assert found == [
        (3, "imports the private module celery._state"),
        (
            4,
            "imports DictOfListsExpandInput from the private path airflow.sdk.definitions._internal.expandinput"
            ".DictOfListsExpandInput",
        ),
        (5, "imports _create_backfill from the private path airflow.models.backfill._create_backfill"),
        (11, "uses the attribute _last_heartbeat_attempt"),
        (11, "uses the attribute _last_successful_heartbeat"),
        (20, "uses _create_backfill of airflow.models.backfill (private)"),
        (22, "uses the attribute _killed_by_airflow"),
        (24, "uses _monitor_subprocess"),
        (27, "names _on_child_started_by_name in a string (a lookup by name of someone else's private)"),
        (28, "uses _on_child_started of airflow.sdk.execution_time.supervisor.ActivitySubprocess (private)"),
    ], found
    assert all(str(use).startswith(f"fixture.py:{use.line}: ") and "sluice.compat" in str(use) for use in uses)


def test_shipped_code_uses_no_test_doubles() -> None:
    """unittest.mock belongs to tests; shipped code uses a supported path or a named, tested compat entry."""
    found = [
        f"{path.name}:{line} {module}"
        for path, line, module in private_use.absolute_imports(PACKAGE)
        if module.split(".")[0] == "unittest"
    ]
    assert not found


def test_the_architecture_page_prints_the_registry_and_lists_every_worker_module() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    assert compat.markdown_table() in doc, "paste sluice.compat.markdown_table() into docs/architecture.md"
    modules = [p.stem for p in (PACKAGE / "worker").glob("*.py") if p.stem != "__init__"]
    assert [m for m in modules if f"`sluice.worker.{m}`" not in doc] == []
