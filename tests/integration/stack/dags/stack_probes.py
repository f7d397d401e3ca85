"""Probe DAGs for the local-stack tests: failure propagation, retries, schedules, long tasks to kill."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, get_current_context, task

START = datetime(2026, 1, 1)

with DAG("probe_failure", schedule=None, start_date=START, catchup=False, default_args={"retries": 0}):

    @task
    def breaks() -> None:
        raise RuntimeError("probe: this task fails on purpose")

    @task
    def child() -> None:
        pass

    @task
    def grandchild() -> None:
        pass

    @task(retries=2, retry_delay=timedelta(seconds=2), retry_exponential_backoff=True)
    def flaky() -> int:
        try_number = get_current_context()["ti"].try_number
        if try_number < 2:
            raise RuntimeError(f"probe: try {try_number} fails, the retry succeeds")
        return try_number

    breaks() >> child() >> grandchild()
    flaky()


with DAG(
    "probe_sleep",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"seconds": Param([20], type="array", description="one mapped task per entry, sleeping that long")},
):

    @task
    def plan() -> list[float]:
        return [float(s) for s in get_current_context()["params"]["seconds"]]

    @task(retries=4, retry_delay=timedelta(seconds=1))
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    nap.expand(seconds=plan())


with DAG("probe_chain", schedule=None, start_date=START, catchup=False, default_args={"retries": 1}):

    @task
    def step(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    previous = None
    for index in range(4):
        current = step.override(task_id=f"step_{index}")(4)
        if previous is not None:
            previous >> current
        previous = current


with DAG("probe_scheduled", schedule=timedelta(seconds=10), start_date=START, catchup=False, max_active_runs=1):

    @task
    def tick() -> str:
        return get_current_context()["run_id"]

    tick()


with DAG("probe_highmem", schedule=None, start_date=START, catchup=False):

    @task(queue="highmem")
    def heavy() -> None:
        time.sleep(2)

    heavy()


with DAG("probe_four", schedule=None, start_date=START, catchup=False):
    # Four independent tasks, taken by one worker at once (the default pool's concurrency in the tests).
    for index in range(4):

        @task(task_id=f"short_{index}", retries=0)
        def short() -> None:
            time.sleep(1)

        short()


# A step that sleeps in a container of the step image (the container-launcher stack runs it; contract v1 by hand,
# so no file of this checkout is needed inside). It records each try's start and end beside its outputs.
SLEEPING_STEP = """
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
params = json.loads(os.environ["SLUICE_STEP_PARAMS"])
outputs = json.loads(os.environ["SLUICE_STEP_OUTPUTS"])
started = time.time()
time.sleep(float(params["seconds"]))
open(outputs["slept"], "w").write(json.dumps({"started": started, "ended": time.time()}))
result = {"contract_version": 1, "outputs": outputs, "metrics": {"started": started, "ended": time.time()}}
open(os.environ["SLUICE_RESULT_URI"], "w").write(json.dumps(result))
"""

with DAG(
    "probe_container",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"seconds": Param(20, type="number")},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=1)},
):
    from sluice.operators import MLStepOperator

    MLStepOperator(
        task_id="nap",
        image="ml-steps",
        command=["python3", "-c", SLEEPING_STEP],
        step_params={"seconds": "{{ params.seconds }}"},
        outputs={"slept": "slept.json"},
        cache=False,
    )


def _started(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (/proc/<pid>/stat field 22): a pid and this name one
    process, even if the pid is reused later."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


with DAG(
    "probe_ledger",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "seconds": Param([15], type="array", description="one mapped task per entry, working that long"),
        "ledger": Param("", type="string", description="folder where each try records its start and its end"),
    },
    default_args={"retries": 3, "retry_delay": timedelta(seconds=1)},
):
    """Each try of each task writes what the fault trials count: its pid and start, whether an earlier try of the
    same task was still alive when it started (two tries at once), and its end (a try that ran to the end)."""

    @task
    def plan_work() -> list[float]:
        return [float(s) for s in get_current_context()["params"]["seconds"]]

    @task
    def work(seconds: float) -> float:
        import json
        import os
        from pathlib import Path

        context = get_current_context()
        ti = context["ti"]
        ledger = Path(context["params"]["ledger"]) / f"{ti.map_index}.jsonl"
        earlier = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
        alive = [r["pid"] for r in earlier if r["event"] == "start" and _started(r["pid"]) == r["started"]]
        me = {"pid": os.getpid(), "started": _started(os.getpid()), "try": ti.try_number}
        with ledger.open("a") as out:
            out.write(json.dumps({**me, "event": "start", "t": time.time(), "earlier_alive": alive}) + "\n")
        time.sleep(seconds)
        with ledger.open("a") as out:
            out.write(json.dumps({**me, "event": "end", "t": time.time()}) + "\n")
        return seconds

    work.expand(seconds=plan_work())
