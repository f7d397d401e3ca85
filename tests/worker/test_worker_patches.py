"""A real Celery worker with Sluice's settings installs its patches when it starts, says which are active (one
log line, and the report ``sluice status`` reads), and on an Airflow without a symbol a patch relies on it
starts all the same, stock for that patch, with one warning naming it."""

from __future__ import annotations

from pathlib import Path

from sluice.worker import dag_cache, exit_wakeup, patches, report, start_heartbeat

from tests.worker.harness import send, start_worker, stop, wait_for

ALL_ON = {dag_cache.ENV: "true", exit_wakeup.ENV: "true", start_heartbeat.ENV: "true"}


def started(redis_url: str, tmp_path: Path, **env: str) -> tuple[dict, str]:
    """Start a worker, run one task on it; the worker's patch report and its log."""
    report_file = tmp_path / "patches.json"
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = start_worker(redis_url, tmp_path, 1, extra_env={**ALL_ON, report.ENV: str(report_file), **env})
    try:
        wait_for(report_file.exists, "the worker's patch report")
        send(redis_url, "after-start", 0, markers)
        wait_for((markers / "after-start.done").exists, "a task on the worker")
        data = report.read(report_file)
    finally:
        stop(worker)
    assert data is not None and data["pid"] == worker.pid, "written by the worker's main process"
    return data, (tmp_path / "worker.log").read_text()


def test_a_worker_installs_its_patches_when_it_starts_and_says_which(redis_url: str, tmp_path: Path) -> None:
    found, log = started(redis_url, tmp_path)
    assert found["patches"] == {
        "dag-cache": patches.ACTIVE,
        "exit-wakeup": patches.ACTIVE,
        "start-heartbeat": patches.ACTIVE,
    }
    assert log.count("Sluice worker patches") == 1, log
    assert "dag-cache active, exit-wakeup active, start-heartbeat active" in log
    assert "not installed" not in log


def test_a_worker_without_a_symbol_a_patch_needs_starts_stock_for_it_with_one_warning(
    redis_url: str, tmp_path: Path
) -> None:
    found, log = started(redis_url, tmp_path, SLUICE_TEST_REMOVE="airflow.sdk.execution_time.context:_get_variable")
    states = found["patches"]
    assert states["dag-cache"].startswith(f"{patches.NOT_INSTALLED}: ") and "_get_variable" in states["dag-cache"]
    assert states["exit-wakeup"] == states["start-heartbeat"] == patches.ACTIVE
    warnings = [line for line in log.splitlines() if "Sluice worker patch " in line]
    assert len(warnings) == 1 and "dag-cache" in warnings[0] and "_get_variable" in warnings[0], log
    assert "dag-cache not installed, exit-wakeup active, start-heartbeat active" in log
