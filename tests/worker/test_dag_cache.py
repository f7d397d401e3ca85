"""When a task process may reuse its pool process's parse of a DAG file, and when it must parse again.

The cache's rules, on real DAG files parsed by Airflow's own BundleDagBag. That the task processes of a
real worker running real Airflow tasks take the inherited parse is asserted on the local stack
(tests/integration/stack/test_stack_pipeline.py), where every task log says so.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sluice.worker import dag_cache

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
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    yield from switched_on(dag_cache, monkeypatch)


def write_dag(folder: Path, dag_id: str, task_ids: str = "['first']", imports: str = "") -> Path:
    """A DAG file whose task ids are the Python expression ``task_ids``."""
    path = folder / f"{dag_id}.py"
    path.write_text(DAG_FILE.format(dag_id=dag_id, task_ids=task_ids, imports=imports))
    return path


def task_parse(path: Path, dag_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What Airflow's task runner does: BundleDagBag, looked up on its module, inside the parsing context."""
    from airflow.dag_processing import dagbag

    monkeypatch.setenv(dag_cache.PARSING_DAG_ID, dag_id)
    bag = dagbag.BundleDagBag(
        dag_folder=str(path),
        safe_mode=False,
        load_op_links=False,
        bundle_path=path.parent,
        bundle_name="dags-folder",
    )
    monkeypatch.delenv(dag_cache.PARSING_DAG_ID)
    return bag


def prepare(cache: ModuleType, path: Path, dag_id: str) -> Any:
    return cache.prepare(str(path), dag_id, str(path.parent), "dags-folder")


def test_a_task_process_reuses_the_pool_process_parse_of_an_unchanged_file(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_dag(tmp_path, "reused")
    parsed = prepare(cache, path, "reused")
    assert parsed.reusable
    with caplog.at_level(logging.INFO, logger=dag_cache.__name__):
        bag = task_parse(path, "reused", monkeypatch)
    assert bag is parsed.bag
    assert "DAG reused taken from the worker's parse" in caplog.text
    assert prepare(cache, path, "reused") is parsed, "an unchanged file is not parsed twice in the pool process"


def test_a_changed_dag_file_is_parsed_again_by_the_task(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "changed")
    parsed = prepare(cache, path, "changed")
    write_dag(tmp_path, "changed", task_ids="['first', 'second']")
    bag = task_parse(path, "changed", monkeypatch)
    assert bag is not parsed.bag
    assert set(bag.dags["changed"].task_dict) == {"first", "second"}


def write_helped_dag(folder: Path, dag_id: str) -> tuple[Path, str]:
    """A DAG file taking its task ids from a module next to it (a name of its own: sys.path keeps old folders)."""
    helpers = f"helpers_{folder.name.replace('-', '_')}"
    (folder / f"{helpers}.py").write_text("TASK_IDS = ['first']\n")
    return write_dag(folder, dag_id, task_ids=f"{helpers}.TASK_IDS", imports=f"import {helpers}"), helpers


def test_a_changed_module_imported_from_the_dag_folder_is_parsed_again(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, helpers = write_helped_dag(tmp_path, "helped")
    parsed = prepare(cache, path, "helped")
    assert parsed.reusable
    assert helpers in parsed.modules
    assert helpers not in sys.modules, "the pool process keeps no module of the DAG folder imported"

    (tmp_path / f"{helpers}.py").write_text("TASK_IDS = ['first', 'from_the_new_helper']\n")
    bag = task_parse(path, "helped", monkeypatch)
    assert bag is not parsed.bag
    assert "from_the_new_helper" in bag.dags["helped"].task_dict


def test_a_reused_parse_brings_the_modules_it_was_built_from(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, helpers = write_helped_dag(tmp_path, "modules")
    parsed = prepare(cache, path, "modules")
    assert task_parse(path, "modules", monkeypatch) is parsed.bag
    assert sys.modules.pop(helpers) is parsed.modules[helpers]


def test_a_file_whose_top_level_code_reads_a_variable_is_parsed_by_every_task(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    assert task_parse(path, "reads_variable", monkeypatch) is not parsed.bag


def test_a_parse_older_than_the_dag_processors_interval_at_the_tasks_start_is_not_reused(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "aged")
    parsed = prepare(cache, path, "aged")
    monkeypatch.setattr(cache, "_max_age", 0.0)
    fresh = prepare(cache, path, "aged")
    assert fresh is not parsed, "the pool process parses an aged file again"
    assert task_parse(path, "aged", monkeypatch) is fresh.bag


def test_a_parse_that_ages_while_its_task_starts_is_still_the_tasks(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "aging")
    parsed = prepare(cache, path, "aging")
    monkeypatch.setattr(cache, "_max_age", 0.0)  # it crosses the interval between the pre-parse and the fork
    assert task_parse(path, "aging", monkeypatch) is parsed.bag


def test_a_dag_the_file_does_not_define_is_left_to_airflow(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_dag(tmp_path, "defined")
    assert not prepare(cache, path, "not_defined").reusable
    monkeypatch.setenv(cache.PARSING_DAG_ID, "not_defined")
    assert cache.lookup(str(path)) is None
    monkeypatch.setenv(cache.PARSING_DAG_ID, "defined")
    assert cache.lookup(str(path)) is None, "only the (file, DAG) pair pre-parsed for this task is served"


def test_the_pool_process_keeps_a_bounded_number_of_parses(
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_PARSES", 2)
    for dag_id in ("one", "two", "three"):
        prepare(cache, write_dag(tmp_path, dag_id), dag_id)
    assert [dag_id for _, dag_id in cache._parses] == ["two", "three"]


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
    cache: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, honours_context: bool
) -> None:
    path = tmp_path / "two_dags.py"
    path.write_text(MANY_DAGS.format(honours_context=honours_context))
    left = prepare(cache, path, "left")
    assert task_parse(path, "left", monkeypatch) is left.bag
    right = prepare(cache, path, "right")
    assert task_parse(path, "right", monkeypatch) is right.bag
    assert (right is left) is not honours_context, "a file that builds only the DAG asked for is parsed per DAG"


def workload(
    dag_rel_path: str = "ml_training_pipeline.py", version: str | None = None, kind: str = "ExecuteTask"
) -> str:
    bundle = {"name": "dags-folder", "version": version}
    ti = {"dag_id": "ml_training_pipeline", "task_id": "ingest"}
    return json.dumps({"type": kind, "dag_rel_path": dag_rel_path, "bundle_info": bundle, "ti": ti})


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
    [workload(version="abc123"), workload(kind="ExecuteCallback"), "not json", json.dumps(["ExecuteTask"])],
    ids=["versioned bundle", "callback", "not json", "not an object"],
)
def test_other_workloads_are_left_to_airflow(payload: str) -> None:
    assert dag_cache.workload_target(payload) is None


def test_a_pre_parse_that_fails_leaves_the_task_to_parse_itself(
    cache: ModuleType, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Sender:
        name = "execute_workload"

    prepare(cache, write_dag(tmp_path, "previous"), "previous")  # the pool process's task before this one
    cache._parses.clear()

    unknown_bundle = json.dumps({**json.loads(workload()), "bundle_info": {"name": "no-such-bundle"}})
    with caplog.at_level(logging.WARNING, logger=dag_cache.__name__):
        dag_cache._on_task_prerun(sender=Sender(), args=(unknown_bundle,))
    assert "could not pre-parse the task's DAG file" in caplog.text
    assert not dag_cache._parses
    assert dag_cache._ready is None, "the task process finds nothing prepared for it"


@pytest.mark.parametrize(("value", "on"), [("true", True), ("True", True), ("1", True), ("false", False), ("", False)])
def test_the_setting_is_read_as_a_boolean(value: str, on: bool) -> None:
    assert dag_cache.enabled(value) is on


def test_a_setting_that_is_not_a_boolean_names_the_chart_value() -> None:
    with pytest.raises(ValueError, match=r"SLUICE_WORKER_DAG_CACHE='sometimes'.*tuning\.workerDagCache"):
        dag_cache.enabled("sometimes")


def test_without_the_setting_airflow_parses_as_stock(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing import dagbag

    monkeypatch.delenv(dag_cache.ENV, raising=False)
    before = dagbag.BundleDagBag
    assert not dag_cache.install()
    assert dagbag.BundleDagBag is before
