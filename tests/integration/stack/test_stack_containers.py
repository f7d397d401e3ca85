"""A local stack whose workers run steps in containers (`sluice up --launcher container`): real Airflow, Celery,
PostgreSQL, Redis and podman. A worker SIGKILLed mid-step leaves no container behind, and the retry's container
starts only after the killed try's is gone; `sluice down` stops what a stack started."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sluice.launchers.engine import Engine
from sluice.platform import current_platform

from tests.integration.stack.conftest import RUN_BOUND, Running, started_stack
from tests.support.containers import require_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return require_image(current_platform().image_ref("ml-steps"))


@pytest.fixture(scope="module")
def container_stack(
    engine: Engine, pg_server, stack_dags: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("container-stack") / "stack"
    with started_stack(
        pg_server, stack_dags, home, autoscale=False, probes=("probe_container",), launcher="container"
    ) as running:
        yield running
    left = engine.run("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=sluice.io/home={home.resolve()}")
    assert left.stdout.split() == [], "sluice down removes every step container the stack started"


def containers(engine: Engine, run_id: str) -> list[dict]:
    """The step containers of a run, by the label the provider derives from its run id."""
    from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value

    done = engine.run("ps", "-a", "--format", "json", "--filter", f"label=run_id={make_safe_label_value(run_id)}")
    return json.loads(done.stdout) if done.stdout.strip() else []


def test_steps_run_in_containers_on_the_stack(container_stack: Running, engine: Engine) -> None:
    run_id, run = container_stack.run("probe_container", {"seconds": 1})
    assert run["state"] == "success"
    logs = container_stack.stack.home / "logs" / "airflow" / "dag_id=probe_container"
    (log,) = [path for path in logs.rglob("attempt=1.log") if run_id in str(path)]
    text = log.read_text()
    assert "container launcher:" in text and "network none, user 10001:10001" in text


def test_sigkill_of_a_worker_mid_step_leaves_no_container_and_no_overlap(
    container_stack: Running, engine: Engine
) -> None:
    run_id = container_stack.api.trigger("probe_container", {"seconds": 25})
    ti = container_stack.wait_for(lambda: container_stack.running_ti("probe_container", run_id), "the step running")
    container_stack.wait_for(lambda: containers(engine, run_id), "the step's container")
    proc = container_stack.worker_proc(ti["hostname"])
    os.killpg(proc.pid, signal.SIGKILL)  # the worker's main process and its pool; the task process is elsewhere
    killed_at = time.monotonic()
    container_stack.wait_for(
        lambda: not any(c["Labels"].get("try_number") == "1" for c in containers(engine, run_id)),
        "the killed try's container to be removed",
        timeout=30,
    )
    gone_after, removed_seen = time.monotonic() - killed_at, time.time()
    retry = container_stack.wait_for(
        lambda: [c for c in containers(engine, run_id) if c["Labels"].get("try_number") != "1"],
        "the retry's container",
    )
    run = container_stack.api.wait_for_run("probe_container", run_id, RUN_BOUND)
    assert run["state"] == "success"
    tries = sorted(container_stack.api.tries("probe_container", run_id, "nap"), key=lambda t: t["try_number"])
    assert tries[-1]["state"] == "success" and tries[-1]["try_number"] >= 2
    print(f"killed try's container removed {gone_after:.1f} s after the SIGKILL")
    assert retry[0]["StartedAt"] > removed_seen, "the retry's container started after the killed try's was gone"
