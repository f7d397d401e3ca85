"""Start a real prefork Celery worker on ``celery_app`` (Sluice's worker settings) and send it tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BOUND = 60  # seconds any wait may take before the test fails


def wait_for(predicate, what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_worker(
    redis_url: str,
    tmp_path: Path,
    concurrency: int,
    kubeconfig: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen:
    env = {**os.environ, "SLUICE_TEST_REDIS": redis_url, "PYTHONPATH": str(HERE)}
    if kubeconfig:
        env |= {
            "KUBECONFIG": str(kubeconfig),
            "POD_NAME": "worker-0",
            "POD_NAMESPACE": "ml",
            "SLUICE_POD_DELETION_COST_INTERVAL": "0.1",
        }
    env |= extra_env or {}
    log = (tmp_path / "worker.log").open("w")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--pool",
            "prefork",
            "-c",
            str(concurrency),
            "-Q",
            "default",
            "-n",
            f"w{os.getpid()}@%h",
            "--loglevel",
            "INFO",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=HERE,
    )


def celery_app_module(redis_url: str) -> Any:
    os.environ["SLUICE_TEST_REDIS"] = redis_url
    sys.path.insert(0, str(HERE))
    try:
        import celery_app
    finally:
        sys.path.remove(str(HERE))
    celery_app.app.conf.broker_url = redis_url
    return celery_app


def send(redis_url: str, name: str, seconds: float, markers: Path):
    return celery_app_module(redis_url).sleep_task.apply_async((name, seconds, str(markers)), queue="default")


def stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()
