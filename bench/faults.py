"""Fault trials on a real local stack (Airflow 3, PostgreSQL, Redis, Celery workers), repeated: how many tasks are
lost, run to the end twice, or run two tries at once, and how long recovery takes.

Every task of ``probe_ledger`` (tests/integration/stack/dags/stack_probes.py) records each try's pid and start,
whether an earlier try of the same task was still alive when it started, and its end. The faults, in turn:

- ``sigkill``: SIGKILL to a busy worker's main process and its process group (as when a pod or node is lost);
  recovery = from the kill to the first retry's start (the supervisor restarts the worker at once: the bench sets
  its back-off to 0, so trials do not wait out a growing CrashLoopBackOff);
- ``redis``: SIGKILL to the broker and a restart while tasks wait; recovery = from the restart to the last
  waiting task's start (one wave when every slot takes a task at once);
- ``down``: `sluice down` while tasks run on a worker the supervisor restarted (a fresh stack each such trial);
- ``untied``: the ``sigkill`` trial on a stack whose workers lack ``sluice.worker.task_lifetime`` — the comparison
  column, what Airflow does on its own (the killed tries run on to their end beside their retries).

Run: `.venv/bin/python bench/faults.py --trials 20` (make bench-faults). Uses PostgreSQL on 127.0.0.1:5432 (its
own database) and starts its own Redis. Prints one row per trial and the totals; exits 1 if any task was lost,
duplicated or overlapped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sluice.stack.api import AirflowApi  # noqa: E402
from sluice.stack.config import StackConfig  # noqa: E402
from sluice.stack.local import LocalStack  # noqa: E402
from sluice.stack.services import free_port  # noqa: E402

from tests.integration.stack.conftest import TEST_RECOVERY  # noqa: E402
from tests.integration.stack.ledger import Ledger, read_ledger  # noqa: E402
from tests.support.stack import restart  # noqa: E402

PROBES = REPO / "tests" / "integration" / "stack" / "dags" / "stack_probes.py"
PLATFORM = REPO / "tests" / "integration" / "stack" / "platform.yaml"
DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/sluice_bench_faults"


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


UNTIED_CONFIG = """# Written by bench/faults.py: Sluice's Celery config without the task-lifetime tie.
from sluice.worker.celery_config import CELERY_CONFIG as TIED

CELERY_CONFIG = {
    **TIED,
    "imports": tuple(name for name in TIED["imports"] if name != "sluice.worker.task_lifetime"),
}
"""


def untied_env(work: Path) -> dict[str, str]:
    """Airflow settings for workers whose task processes are not tied to them: the comparison column."""
    module = work / "untied" / "sluice_bench_untied.py"
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(UNTIED_CONFIG)
    return {
        "PYTHONPATH": str(module.parent),
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "sluice_bench_untied.CELERY_CONFIG",
    }


@contextmanager
def stack(work: Path, extra_env: dict[str, str] | None = None) -> Iterator[tuple[LocalStack, AirflowApi]]:
    dags = work / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROBES, dags / PROBES.name)
    home = Path(tempfile.mkdtemp(prefix="stack-", dir=work)) / "stack"
    local = LocalStack(home)
    config = StackConfig(
        db_url=DB,
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        dags_folder=str(dags),
        platform_file=str(PLATFORM),
        api_port=free_port(),
        autoscale=False,
        airflow_env={**TEST_RECOVERY, **(extra_env or {})},
        # Each trial kills the worker: without this the supervisor's CrashLoopBackOff (10, 20, 40 ... 300 s) would
        # grow over the trials and become what they measure.
        restart_backoff_seconds=0,
    )
    from tests.support.postgres import drop_database

    drop_database(DB)  # each stack starts from an empty metadata DB
    local.up(config)
    try:
        api = AirflowApi(config.api_url, "admin", local.secrets().admin_password)
        api.wait_for_dag("probe_ledger")
        api.unpause("probe_ledger")
        yield local, api
    finally:
        local.down()


def task_states(api: AirflowApi, run_id: str) -> list[dict[str, Any]]:
    return [t for t in api.task_instances("probe_ledger", run_id) if t["task_id"] == "work"]


def all_running(api: AirflowApi, run_id: str, count: int) -> list[dict[str, Any]] | None:
    running = [t for t in task_states(api, run_id) if t["state"] == "running"]
    return running if len(running) == count else None


def starts(folder: Path) -> list[dict[str, Any]]:
    return [
        record
        for path in sorted(folder.glob("*.jsonl"))
        for record in map(json.loads, path.read_text().splitlines())
        if record["event"] == "start"
    ]


def sigkill_trial(local: LocalStack, api: AirflowApi, ledger: Path, tasks: int, seconds: float) -> tuple[Ledger, float]:
    run_id = api.trigger("probe_ledger", {"seconds": [seconds] * tasks, "ledger": str(ledger)})
    # Every task at work (it wrote its start), not only marked running: a try killed before its start was written
    # would go uncounted by the overlap check.
    running = wait_for(
        lambda: len(starts(ledger)) >= tasks and all_running(api, run_id, tasks), f"{tasks} tasks at work"
    )
    hosts = [t["hostname"] for t in running]
    busy = max(set(hosts), key=hosts.count)
    proc = next(p for p in local.state().workers() if p.worker_name == busy)
    os.killpg(proc.pid, signal.SIGKILL)
    killed = time.time()
    api.wait_for_run("probe_ledger", run_id, 600)
    retried = [r["t"] for r in starts(ledger) if r["try"] > 1]
    return read_ledger(ledger, tasks), (min(retried) - killed) if retried else 0.0


def redis_trial(local: LocalStack, api: AirflowApi, ledger: Path, tasks: int, seconds: float) -> tuple[Ledger, float]:
    """The broker dies and comes back while ``tasks`` wait; the default pool's worker has ``tasks`` slots free."""
    restart(local, "redis", signal.SIGKILL)
    restarted = time.time()
    run_id = api.trigger("probe_ledger", {"seconds": [seconds] * tasks, "ledger": str(ledger)})
    api.wait_for_run("probe_ledger", run_id, 600)
    began = [r["t"] for r in starts(ledger)]
    return read_ledger(ledger, tasks), max(began) - restarted


def down_trial(work: Path, ledger: Path, tasks: int, seconds: float) -> tuple[Ledger, float]:
    with stack(work) as (local, api):
        (old,) = [p for p in local.state().workers() if p.worker_name.startswith("default-")]
        os.killpg(old.pid, signal.SIGKILL)
        wait_for(
            lambda: any(
                p.alive() and p.pid != old.pid and p.worker_name.startswith("default-") for p in local.state().workers()
            ),
            "the supervisor to restart the worker",
        )
        local.wait_healthy()
        run_id = api.trigger("probe_ledger", {"seconds": [seconds] * tasks, "ledger": str(ledger)})
        wait_for(lambda: len(starts(ledger)) >= tasks and all_running(api, run_id, tasks), f"{tasks} tasks at work")
        started = time.time()
        local.down()
        return read_ledger(ledger, tasks), time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL trials (and a quarter as many of the others)")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="each task's work")
    parser.add_argument(
        "--untied-trials",
        type=int,
        default=3,
        help="SIGKILL trials on workers without the task-lifetime tie (sluice.worker.task_lifetime), side by side",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-faults-"))
    others = args.trials // 4

    def record(fault: str, trial: int, run: Callable[[Path], tuple[Ledger, float]]) -> None:
        ledger = work / f"{fault}-{trial}"
        ledger.mkdir()
        result, seconds = run(ledger)
        rows.append({"fault": fault, "trial": trial, **result.__dict__, "recovery_s": round(seconds, 1)})
        print(rows[-1], flush=True)

    try:
        with stack(work) as (local, api):
            for trial in range(args.trials):
                record("sigkill", trial, lambda ledger: sigkill_trial(local, api, ledger, args.tasks, args.seconds))
            for trial in range(others):
                record("redis", trial, lambda ledger: redis_trial(local, api, ledger, args.tasks, args.seconds))
        for trial in range(others):
            record("down", trial, lambda ledger: down_trial(work, ledger, args.tasks, args.seconds))
        if args.untied_trials:
            with stack(work, untied_env(work)) as (local, api):
                for trial in range(args.untied_trials):
                    record("untied", trial, lambda ledger: sigkill_trial(local, api, ledger, args.tasks, args.seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{'fault':10}{'trials':>7}{'tasks':>7}{'tries':>7}{'lost':>6}{'dup':>5}{'overlap':>8}"
        f"{'recovery s (median, max)':>27}"
    )
    for fault in ("sigkill", "redis", "down", "untied"):
        mine = [r for r in rows if r["fault"] == fault]
        if not mine:
            continue
        recoveries = [r["recovery_s"] for r in mine]
        print(
            f"{fault:10}{len(mine):>7}{sum(r['tasks'] for r in mine):>7}{sum(r['tries'] for r in mine):>7}"
            f"{sum(r['lost'] for r in mine):>6}{sum(r['duplicated'] for r in mine):>5}"
            f"{sum(r['overlapped'] for r in mine):>8}{statistics.median(recoveries):>18.1f}, {max(recoveries):.1f}"
        )
    print("recovery: sigkill, kill → first retry starts; redis, restart → last waiting task starts; down, its duration")
    print("untied: the same SIGKILL trials on workers without sluice.worker.task_lifetime (Airflow's own behaviour)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    if any(r["lost"] or r["duplicated"] or r["overlapped"] for r in rows if r["fault"] != "untied"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
