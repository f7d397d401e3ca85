"""When a task process may reuse its pool process's parse of a DAG file, and when it must parse again.

The cache's rules, on real DAG files: the pool process pre-parses with Airflow's own BundleDagBag, and the task
side is Airflow's task runner itself (``task_runner.parse`` with a real ``StartupDetails``, inside the parsing
context the runner sets). That the task processes of a real worker running real Airflow tasks take the
inherited parse is asserted on the local stack (tests/integration/stack/test_stack_pipeline.py), where every
task log says so.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sluice import compat
from sluice.worker import dag_cache, patches

from tests.worker.supervised import running_dag_run
from tests.worker.switches import switched_on

DAG_FILE = """\
from datetime import datetime
from airflow.sdk import DAG, task
{imports}

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
    @task
    def first():
        pass

    for task_id in {task_ids}:
        first.override(task_id=task_id)()
"""


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[dag_cache.DagCache]:
    """The pool process's cache, installed as a worker installs it at start."""
    for _ in switched_on(dag_cache, monkeypatch):
        installed = dag_cache.current()
        assert installed is not None
        yield installed


def write_dag(folder: Path, dag_id: str, task_ids: str = "['first']", imports: str = "") -> Path:
    """A DAG file whose task ids are the Python expression ``task_ids``."""
    path = folder / f"{dag_id}.py"
    path.write_text(DAG_FILE.format(dag_id=dag_id, task_ids=task_ids, imports=imports))
    return path


def startup_details(path: Path, dag_id: str) -> Any:
    """The message a supervisor sends its task process: run task ``first`` of ``dag_id`` from ``path``."""
    from airflow.sdk.api.datamodels._generated import BundleInfo, TaskInstance, TIRunContext
    from airflow.sdk.execution_time.comms import StartupDetails

    run = running_dag_run(dag_id)
    ti = TaskInstance(
        id=uuid.uuid4(), task_id="first", dag_id=dag_id, run_id="r", try_number=1, dag_version_id=uuid.uuid4()
    )
    return StartupDetails(
        ti=ti,
        dag_rel_path=path.name,
        bundle_info=BundleInfo(name="dags-folder", version=None),
        start_date=run.start_date,
        ti_context=TIRunContext(dag_run=run, max_tries=0),
        sentry_integration="",
    )


def task_parse(path: Path, dag_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What Airflow's task runner does when its task process starts: ``parse`` inside the parsing context, the
    DAG bundle ``dags-folder`` being ``path``'s folder. The DAG the task's operator belongs to."""
    import structlog
    from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager
    from airflow.sdk.execution_time import task_runner

    bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}
    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{**bundle, "kwargs": {"path": str(path.parent)}}])
    )
    context_env = compat.parsing_context_env()
    for name in context_env:
        monkeypatch.setenv(name, "")  # Airflow's context manager restores what was there; monkeypatch then clears
    with _airflow_parsing_context_manager(dag_id=dag_id, task_id="first"):
        ti = task_runner.parse(startup_details(path, dag_id), structlog.get_logger())
    for name in context_env:
        monkeypatch.delenv(name)
    return ti.task.dag


def prepare(cache: dag_cache.DagCache, path: Path, dag_id: str) -> Any:
    return cache.prepare(str(path), dag_id, str(path.parent), "dags-folder")


def test_a_task_process_reuses_the_pool_process_parse_of_an_unchanged_file(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_dag(tmp_path, "reused")
    parsed = prepare(cache, path, "reused")
    assert parsed.reusable
    with caplog.at_level(logging.INFO, logger=dag_cache.__name__):
        dag = task_parse(path, "reused", monkeypatch)
    assert dag is parsed.bag.dags["reused"]
    assert "DAG reused taken from the worker's parse" in caplog.text
    assert prepare(cache, path, "reused") is parsed, "an unchanged file is not parsed twice in the pool process"


def test_a_changed_dag_file_is_parsed_again_by_the_task(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "changed")
    parsed = prepare(cache, path, "changed")
    write_dag(tmp_path, "changed", task_ids="['first', 'second']")
    dag = task_parse(path, "changed", monkeypatch)
    assert dag is not parsed.bag.dags["changed"]
    assert set(dag.task_dict) == {"first", "second"}


def write_helped_dag(folder: Path, dag_id: str) -> tuple[Path, str]:
    """A DAG file taking its task ids from a module next to it (a name of its own: sys.path keeps old folders)."""
    helpers = f"helpers_{folder.name.replace('-', '_')}"
    (folder / f"{helpers}.py").write_text("TASK_IDS = ['first']\n")
    return write_dag(folder, dag_id, task_ids=f"{helpers}.TASK_IDS", imports=f"import {helpers}"), helpers


def test_a_changed_module_imported_from_the_dag_folder_is_parsed_again(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, helpers = write_helped_dag(tmp_path, "helped")
    parsed = prepare(cache, path, "helped")
    assert parsed.reusable
    assert helpers in parsed.modules
    assert helpers not in sys.modules, "the pool process keeps no module of the DAG folder imported"

    (tmp_path / f"{helpers}.py").write_text("TASK_IDS = ['first', 'from_the_new_helper']\n")
    dag = task_parse(path, "helped", monkeypatch)
    assert dag is not parsed.bag.dags["helped"]
    assert "from_the_new_helper" in dag.task_dict


def test_a_reused_parse_brings_the_modules_it_was_built_from(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, helpers = write_helped_dag(tmp_path, "modules")
    parsed = prepare(cache, path, "modules")
    assert task_parse(path, "modules", monkeypatch) is parsed.bag.dags["modules"]
    assert sys.modules.pop(helpers) is parsed.modules[helpers]


def test_a_file_whose_top_level_code_reads_a_variable_is_parsed_by_every_task(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.execution_time import context

    before = context._get_variable
    # It even survives the refusal: the file is still not reused, as its next parse may differ.
    imports = (
        "from airflow.sdk import Variable\n"
        "try:\n    TASK_IDS = [Variable.get('task_id')]\nexcept Exception:\n    TASK_IDS = ['first']"
    )
    path = write_dag(tmp_path, "reads_variable", task_ids="TASK_IDS", imports=imports)
    parsed = prepare(cache, path, "reads_variable")
    assert not parsed.reusable
    assert context._get_variable is before, "the pre-parse puts Airflow's Variable access back"
    assert task_parse(path, "reads_variable", monkeypatch) is not parsed.bag.dags["reads_variable"]


def test_a_parse_older_than_the_dag_processors_interval_at_the_tasks_start_is_not_reused(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "aged")
    parsed = prepare(cache, path, "aged")
    cache.max_age = 0.0
    fresh = prepare(cache, path, "aged")
    assert fresh is not parsed, "the pool process parses an aged file again"
    assert task_parse(path, "aged", monkeypatch) is fresh.bag.dags["aged"]


def test_a_parse_that_ages_while_its_task_starts_is_still_the_tasks(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "aging")
    parsed = prepare(cache, path, "aging")
    cache.max_age = 0.0  # it crosses the interval between the pre-parse and the fork
    assert task_parse(path, "aging", monkeypatch) is parsed.bag.dags["aging"]


def test_a_dag_the_file_does_not_define_is_left_to_airflow(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "defined")
    assert not prepare(cache, path, "not_defined").reusable
    dag_env, _ = compat.parsing_context_env()
    monkeypatch.setenv(dag_env, "not_defined")
    assert cache.lookup(str(path)) is None
    monkeypatch.setenv(dag_env, "defined")
    assert cache.lookup(str(path)) is None, "only the (file, DAG) pair pre-parsed for this task is served"


def test_the_pool_process_keeps_a_bounded_number_of_parses(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.max_parses = 2
    parsed = {dag_id: prepare(cache, write_dag(tmp_path, dag_id), dag_id) for dag_id in ("one", "two", "three")}
    assert prepare(cache, tmp_path / "three.py", "three") is parsed["three"], "a recent parse is kept"
    assert prepare(cache, tmp_path / "one.py", "one") is not parsed["one"], "the least recently used is dropped"
    assert prepare(cache, tmp_path / "three.py", "three") is parsed["three"]


MANY_DAGS = """\
from datetime import datetime
from airflow.sdk import DAG, get_parsing_context, task

for dag_id in ["left", "right"]:
    if {honours_context} and get_parsing_context().dag_id not in (None, dag_id):
        continue
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        @task
        def first():
            pass

        first()
    globals()[dag_id] = dag
"""


@pytest.mark.parametrize("honours_context", [False, True])
def test_one_parse_serves_every_dag_its_file_builds(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, honours_context: bool
) -> None:
    path = tmp_path / "two_dags.py"
    path.write_text(MANY_DAGS.format(honours_context=honours_context))
    left = prepare(cache, path, "left")
    assert task_parse(path, "left", monkeypatch) is left.bag.dags["left"]
    right = prepare(cache, path, "right")
    assert task_parse(path, "right", monkeypatch) is right.bag.dags["right"]
    assert (right is left) is not honours_context, "a file that builds only the DAG asked for is parsed per DAG"


def workload(
    dag_rel_path: str = "ml_training_pipeline.py", version: str | None = None, bundle: str = "dags-folder"
) -> str:
    """What the Celery executor sends a worker for a task: ``ExecuteTask.make`` from a task instance (Airflow's own
    models: its DAG, DAG run and bundle), dumped with ``model_dump_json()`` as the executor dumps it."""
    from airflow.executors.workloads import ExecuteTask
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("ml_training_pipeline", schedule=None) as dag:
        EmptyOperator(task_id="ingest_csv")
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("ingest_csv")
    ti = TaskInstance(task=task, run_id="manual__r", dag_version_id=uuid.uuid4())
    ti.dag_model = DagModel(dag_id=dag.dag_id, bundle_name=bundle, relative_fileloc=dag_rel_path)
    ti.dag_run = DagRun(dag_id=dag.dag_id, run_id="manual__r", run_type="manual", bundle_version=version)
    return ExecuteTask.make(ti).model_dump_json()


def callback_workload() -> str:
    """A DAG-bundle workload that is not a task: a callback, as the executor sends it."""
    from airflow.executors.workloads import BundleInfo, ExecuteCallback
    from airflow.executors.workloads.callback import CallbackDTO, CallbackFetchMethod

    callback = CallbackDTO(id=str(uuid.uuid4()), fetch_method=CallbackFetchMethod.IMPORT_PATH, data={"path": "x.y"})
    return ExecuteCallback(
        token="",
        dag_rel_path=Path("ml_training_pipeline.py"),
        bundle_info=BundleInfo(name="dags-folder"),
        log_path=None,
        callback=callback,
    ).model_dump_json()


def test_a_task_workload_in_the_local_dag_folder_is_pre_parsed(dags_folder: Path) -> None:
    path, dag_id, bundle_path, bundle_name = dag_cache.workload_target(workload())
    assert (Path(path), dag_id, Path(bundle_path), bundle_name) == (
        dags_folder / "ml_training_pipeline.py",
        "ml_training_pipeline",
        dags_folder,
        "dags-folder",
    )


@pytest.mark.parametrize(
    "payload",
    [lambda: workload(version="abc123"), callback_workload, lambda: "not json", lambda: json.dumps(["ExecuteTask"])],
    ids=["versioned bundle", "callback", "not json", "not an object"],
)
def test_other_workloads_are_left_to_airflow(payload: Callable[[], str]) -> None:
    assert dag_cache.workload_target(payload()) is None


def test_a_pre_parse_that_fails_leaves_the_task_to_parse_itself(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Celery's task_prerun for a task whose bundle cannot be found: the previous task's parse is not handed on."""
    from celery.signals import task_prerun

    class Sender:
        name = "execute_workload"

    path = write_dag(tmp_path, "previous")
    previous = prepare(cache, path, "previous")  # the pool process's task before this one

    unknown_bundle = workload(bundle="no-such-bundle")
    with caplog.at_level(logging.WARNING, logger=dag_cache.__name__):
        task_prerun.send(sender=Sender(), args=(unknown_bundle,))
    assert "could not pre-parse the task's DAG file" in caplog.text
    assert task_parse(path, "previous", monkeypatch) is not previous.bag.dags["previous"], (
        "the task process finds nothing prepared for it and parses its file itself"
    )


def test_the_bag_a_task_process_builds_is_airflows_bundle_dag_bag_holding_the_pool_process_parse(
    cache: dag_cache.DagCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing import dagbag

    path = write_dag(tmp_path, "adopted")
    parsed = prepare(cache, path, "adopted")
    dag_env, _ = compat.parsing_context_env()
    monkeypatch.setenv(dag_env, "adopted")
    bag = dagbag.BundleDagBag(dag_folder=str(path), bundle_path=tmp_path, bundle_name="dags-folder")
    assert isinstance(bag, cache.original)
    assert bag.dags["adopted"] is parsed.bag.dags["adopted"] and bag.import_errors == {}
    monkeypatch.setenv(dag_env, "other")
    other = dagbag.BundleDagBag(dag_folder=str(path), bundle_path=tmp_path, bundle_name="dags-folder")
    assert isinstance(other, cache.original)
    assert other.dags["adopted"] is not parsed.bag.dags["adopted"], "asked for another DAG: Airflow's own parse"


@pytest.mark.parametrize(("value", "on"), [("true", True), ("True", True), ("1", True), ("false", False), ("", False)])
def test_the_setting_is_read_as_a_boolean(value: str, on: bool) -> None:
    assert dag_cache.enabled(value) is on


def test_a_setting_that_is_not_a_boolean_names_the_chart_value() -> None:
    with pytest.raises(ValueError, match=r"SLUICE_WORKER_DAG_CACHE='sometimes'.*tuning\.workerDagCache"):
        dag_cache.enabled("sometimes")


DAG_CACHE = next(patch for patch in patches.PATCHES if patch.module is dag_cache)


def test_without_the_setting_airflow_parses_as_stock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing import dagbag

    monkeypatch.delenv(dag_cache.ENV, raising=False)
    before = dagbag.BundleDagBag
    assert patches.install(DAG_CACHE) == patches.OFF
    assert dagbag.BundleDagBag is before
    assert "first" in task_parse(write_dag(tmp_path, "stock"), "stock", monkeypatch).task_dict


def test_with_a_symbol_it_relies_on_gone_the_cache_stays_out_and_tasks_parse_as_stock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An Airflow without ``context._get_variable``: the cache could not tell files that read Variables."""
    from airflow.dag_processing import dagbag
    from airflow.sdk.execution_time import context

    monkeypatch.setenv(dag_cache.ENV, "true")
    monkeypatch.delattr(context, "_get_variable")
    before = dagbag.BundleDagBag
    try:
        with caplog.at_level(logging.WARNING):
            state = patches.install(DAG_CACHE)
        assert state.startswith(f"{patches.NOT_INSTALLED}: ") and "_get_variable" in state
        assert dagbag.BundleDagBag is before, "Airflow's own BundleDagBag"
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "dag-cache (tuning.workerDagCache" in warnings[0] and "_get_variable" in warnings[0]
        path = write_dag(tmp_path, "uncached")
        with caplog.at_level(logging.INFO, logger=dag_cache.__name__):
            assert "first" in task_parse(path, "uncached", monkeypatch).task_dict
        assert "taken from the worker's parse" not in caplog.text
    finally:
        dag_cache.uninstall()
