"""Workers load ``tuning.workerPreload`` once, before the pool forks, so task processes inherit it.

A real prefork Celery worker with Sluice's worker settings (Celery's ``imports``) on a throwaway Redis.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sluice.launchers.warm import stop_runners
from sluice.worker.preload import preload, preload_modules

from tests.worker.harness import celery_app_module, start_worker, stop, wait_for

# Modules nothing in the test worker imports on its own.
PRELOADED = ["sluice.operators", "airflow.providers.standard.operators.python"]


def _report(redis_url: str, tmp_path: Path, preload_env: str) -> dict:
    out = tmp_path / "report.json"
    home = Path(tempfile.mkdtemp(prefix="sw-", dir="/tmp"))  # short: the warm runner's socket lives under it
    env = {"SLUICE_WORKER_PRELOAD": preload_env, "SLUICE_HOME": str(home)}
    worker = start_worker(redis_url, tmp_path, concurrency=1, extra_env=env)
    try:
        celery_app_module(redis_url).report_modules.apply_async((PRELOADED, str(out)), queue="default")
        wait_for(out.exists, "the task's report")
        report = json.loads(out.read_text())
        deadline = time.monotonic() + 60  # the runner's imports take a second or two after the worker's start
        while not (runners := list((home / "warm").glob("*.sock"))) and time.monotonic() < deadline and preload_env:
            time.sleep(0.1)
        report["warm_runners"] = len(runners)
    finally:
        stop(worker)
        stop_runners(home)
        shutil.rmtree(home, ignore_errors=True)
    return report


@pytest.mark.slow  # a real Celery worker on a throwaway Redis
def test_task_processes_inherit_the_preloaded_modules(redis_url: str, tmp_path: Path) -> None:
    report = _report(redis_url, tmp_path, ",".join(PRELOADED))
    assert report["loaded"] == dict.fromkeys(PRELOADED, True)
    assert report["frozen"] > 0, "the preloaded objects should be frozen out of the children's collections"


@pytest.mark.slow  # a real Celery worker on a throwaway Redis
def test_pool_processes_inherit_configured_orm_mappers(redis_url: str, tmp_path: Path) -> None:
    """Not configured per pool process at its first result write (Airflow then imports all its models)."""
    assert _report(redis_url, tmp_path, ",".join(PRELOADED))["mappers_configured"] is True


@pytest.mark.slow  # a real Celery worker on a throwaway Redis
def test_with_the_local_launcher_the_worker_starts_the_warm_runner_and_names_the_steps_once(
    redis_url: str, tmp_path: Path
) -> None:
    """The local stack's steps run beside the worker: its first steps find the runner started, and no task
    hashes or parses the step package's files again (~30 ms each)."""
    report = _report(redis_url, tmp_path, ",".join(PRELOADED))
    assert report["steps_named_from_inherited_caches"] is True
    assert report["warm_runners"] == 1


@pytest.mark.slow  # a real Celery worker on a throwaway Redis
def test_without_a_preload_list_each_task_imports_for_itself(redis_url: str, tmp_path: Path) -> None:
    report = _report(redis_url, tmp_path, "")
    assert report["loaded"] == dict.fromkeys(PRELOADED, False)
    assert report["mappers_configured"] is False
    assert report["steps_named_from_inherited_caches"] is False
    assert report["warm_runners"] == 0


def test_a_module_that_cannot_be_imported_stops_the_worker_naming_it_and_the_setting(tmp_path: Path) -> None:
    code = "from sluice.worker.preload import preload; preload(['sluice.no_such_module'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "SLUICE_WORKER_PRELOAD names 'sluice.no_such_module'" in out.stderr
    assert "tuning.workerPreload" in out.stderr


@pytest.mark.parametrize(("value", "modules"), [("", []), (" a.b , c ,", ["a.b", "c"])])
def test_the_preload_list_is_read_from_comma_separated_names(value: str, modules: list[str]) -> None:
    assert preload_modules(value) == modules


def test_an_empty_list_imports_nothing_and_freezes_nothing() -> None:
    before = gc.get_freeze_count()
    preload([])
    assert gc.get_freeze_count() == before
