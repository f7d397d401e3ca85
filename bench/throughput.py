"""Celery scheduling throughput, task latency and component memory: stock Airflow 3.3 vs Sluice's tuning.

Both configurations run in one invocation, one after the other, each on its own fresh local stack (own
database, own throwaway Redis, same pool: one worker, concurrency 8), so the ratio compares like with like
on this noisy machine. Tasks are Python no-ops (EmptyOperator never reaches a worker). Throughput is tasks
divided by the time from the trigger to the last task's end; latency comes from the task-instance
timestamps (queued→running and scheduled→running). Memory is the PSS of each component's process tree.
With ``--repeat N`` each workload runs N times in a row and the median run (by tasks/s) is reported, with
the range of all N: single runs of the short workloads vary by ±10% on a loaded 2-core machine.

    python bench/throughput.py --tasks 200 1000 --json bench/results/throughput.json --plots docs/img
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sluice.stack.api import AirflowApi
from sluice.stack.config import TUNING_KEYS, TUNING_NAMES, StackConfig, tuning_settings
from sluice.stack.local import LocalStack
from sluice.stack.services import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support: the benches share the test harness's helpers

from tests.support.postgres import drop_database  # noqa: E402

console = Console(width=170)
MANY_DAGS = 20
PLATFORM = """\
executor: CeleryExecutor
launcher: {type: local}
artifacts: {root: /tmp/sluice-bench-artifacts}
profiles: {default: {cpu: "1", memory: 1Gi}}
pools:
  - name: default
    queues: [default]
    concurrency: 8
    autoscaling: {enabled: false}
"""
DAG_FILE = """\
from datetime import datetime
from airflow.sdk import DAG, task

for index in range({dags}):
    with DAG(f"{prefix}_{{index}}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             max_active_tasks={tasks_per_dag}) as dag:
        @task
        def noop():
            pass

        for number in range({tasks_per_dag}):
            noop.override(task_id=f"noop_{{number}}")()
    globals()[dag.dag_id] = dag
"""


CHAIN_FILE = """\
from datetime import datetime
from airflow.sdk import DAG, chain, task

with DAG("chain_{length}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    @task
    def noop():
        pass

    chain(*[noop.override(task_id=f"noop_{{number}}")() for number in range({length})])
"""
CHAIN = 20
LATENCY_WORKLOAD = f"{CHAIN} tasks in a chain"


def write_dags(folder: Path, sizes: list[int]) -> dict[str, list[str]]:
    """A chain (latency with no contention); one DAG with N tasks and MANY_DAGS DAGs of N/MANY_DAGS, for every N."""
    (folder / "bench_chain.py").write_text(CHAIN_FILE.format(length=CHAIN))
    workloads = {LATENCY_WORKLOAD: [f"chain_{CHAIN}"]}
    for size in sizes:
        one, many = f"one_{size}", f"many_{size}"
        (folder / f"bench_{one}.py").write_text(DAG_FILE.format(dags=1, prefix=one, tasks_per_dag=size))
        (folder / f"bench_{many}.py").write_text(
            DAG_FILE.format(dags=MANY_DAGS, prefix=many, tasks_per_dag=size // MANY_DAGS)
        )
        workloads[f"{size} tasks, 1 DAG"] = [f"{one}_0"]
        workloads[f"{size} tasks, {MANY_DAGS} DAGs"] = [f"{many}_{i}" for i in range(MANY_DAGS)]
    return workloads


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_workload(api: AirflowApi, engine: Any, dag_ids: list[str]) -> dict[str, float]:
    started = time.time()
    runs = [(dag_id, api.trigger(dag_id)) for dag_id in dag_ids]
    for dag_id, run_id in runs:
        state = api.wait_for_run(dag_id, run_id, timeout=3600)["state"]
        if state != "success":
            raise RuntimeError(f"{dag_id} {run_id} ended {state}")
    query = sa.text(
        "SELECT EXTRACT(EPOCH FROM start_date - queued_dttm), EXTRACT(EPOCH FROM start_date - scheduled_dttm),"
        " EXTRACT(EPOCH FROM end_date) FROM task_instance WHERE dag_id = ANY(:dags) AND run_id = ANY(:runs)"
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"dags": dag_ids, "runs": [r for _, r in runs]}).all()
    queued = [float(r[0]) for r in rows]
    scheduled = [float(r[1]) for r in rows]
    wall = max(float(r[2]) for r in rows) - started
    return {
        "tasks": len(rows),
        "seconds": round(wall, 1),
        "tasks_per_s": round(len(rows) / wall, 2),
        "queued_to_running_p50": round(percentile(queued, 0.5), 2),
        "queued_to_running_p95": round(percentile(queued, 0.95), 2),
        "scheduled_to_running_p50": round(percentile(scheduled, 0.5), 2),
        "scheduled_to_running_p95": round(percentile(scheduled, 0.95), 2),
    }


def measured_run(stack: LocalStack, api: AirflowApi, engine: Any, dag_ids: list[str]) -> dict[str, Any]:
    before = cpu_seconds(stack)
    figures: dict[str, Any] = run_workload(api, engine, dag_ids)
    after = cpu_seconds(stack)
    figures["cpu_ms_per_task"] = {
        kind: round((after[kind] - before.get(kind, 0.0)) * 1000 / figures["tasks"]) for kind in after
    }
    return figures


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (the upper one of an even count), its latency and CPU with it."""
    figures = dict(sorted(runs, key=lambda run: run["tasks_per_s"])[len(runs) // 2])
    figures["runs_tasks_per_s"] = [run["tasks_per_s"] for run in runs]
    return figures


def rate(figures: dict[str, Any]) -> str:
    runs = figures.get("runs_tasks_per_s", [])
    spread = f" ({min(runs)}–{max(runs)})" if len(runs) > 1 else ""
    return f"{figures['tasks_per_s']}{spread}"


def per_component(stack: LocalStack, measure: Callable[[psutil.Process], float], by: str) -> dict[str, float]:
    """``measure`` summed over each component's process tree, keyed by the component's ``by`` attribute."""
    out: dict[str, float] = {}
    for proc in stack.state().procs:
        live = proc.process()
        if live is None:
            continue
        for member in [live, *live.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                out[getattr(proc, by)] = out.get(getattr(proc, by), 0.0) + measure(member)
    return out


def _used(member: psutil.Process) -> float:
    times = member.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def cpu_seconds(stack: LocalStack) -> dict[str, float]:
    """CPU time so far per kind of component (a task process's time reaches its supervisor when it exits),
    and of a PostgreSQL server the stack did not start: on one machine its CPU is the stack's too."""
    out = per_component(stack, _used, "kind")
    if "postgres" in out:
        return out
    servers = []
    for process in psutil.process_iter(["name", "ppid"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if process.info["name"] == "postgres" and psutil.Process(process.info["ppid"]).name() != "postgres":
                servers.append(process)  # a postmaster: its children's times include its dead backends
    for member in [member for server in servers for member in [server, *server.children(recursive=True)]]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            out["postgres (shared)"] = out.get("postgres (shared)", 0.0) + _used(member)
    return out


def pss_mb(stack: LocalStack) -> dict[str, float]:
    """PSS of each component with its children (a Celery worker's pool processes count as the worker)."""
    pss = per_component(stack, lambda member: member.memory_full_info().pss, "name")
    return {name: round(value / 2**20, 1) for name, value in pss.items()}


# Airflow's own value for each tuning key: ``--without KEY`` runs Sluice's tuning with just that key stock.
STOCK_VALUES = {
    "minHeartbeatInterval": "5",
    "maxTisPerQuery": "16",
    "workerPreload": "",
    "workerDagCache": "false",
    "workerExitWakeup": "false",
    "workerStartHeartbeat": "false",
    "taskTrackStarted": "true",
}


def bench_tuning(
    tuning: str,
    workloads: dict[str, list[str]],
    dags: Path,
    platform: Path,
    db: str,
    without: str | None = None,
    repeat: int = 1,
) -> dict:
    label = tuning if without is None else f"{tuning} without {without}"
    overrides = {} if without is None else {TUNING_KEYS[without]: STOCK_VALUES[without]}
    home = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{tuning}-")) / "stack"
    stack = LocalStack(home)
    config = StackConfig(
        db_url=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}_{tuning}_{without or 'all'}".lower(),
        broker_url=f"redis://127.0.0.1:{free_port()}/0",  # a throwaway Redis of its own
        dags_folder=str(dags),
        platform_file=str(platform),
        api_port=free_port(),
        tuning=tuning,  # type: ignore[arg-type]
        airflow_env=overrides,
    )
    settings = tuning_settings(tuning) | overrides
    console.print(f"[bold]{label}[/]: starting a local stack ({settings or 'Airflow defaults'})")
    started = time.monotonic()
    stack.up(config)
    result: dict[str, Any] = {"up_seconds": round(time.monotonic() - started, 1), "workloads": {}}
    engine = sa.create_engine(stack.state().config.db_url)
    try:
        api = AirflowApi(config.api_url, "admin", stack.secrets().admin_password)
        for dag_ids in workloads.values():
            for dag_id in dag_ids:
                api.wait_for_dag(dag_id, timeout=300)
                api.unpause(dag_id)
        for name, dag_ids in workloads.items():
            figures = median_run([measured_run(stack, api, engine, dag_ids) for _ in range(repeat)])
            latency = figures["queued_to_running_p50"]
            console.print(f"  {name}: {rate(figures)} tasks/s, p50 queued→running {latency} s")
            result["workloads"][name] = figures
        result["pss_mb"] = pss_mb(stack)
    finally:
        engine.dispose()
        stack.down()
        drop_database(stack.state().config.db_url)
    return result


def print_table(results: dict[str, dict]) -> None:
    stock, tuned = results["stock"], results["sluice"]
    table = Table(title="Celery throughput and latency: stock Airflow 3.3 vs Sluice (same run, same machine)")
    for column in (
        "workload",
        "tasks/s stock",
        "tasks/s sluice",
        "ratio",
        "queued→running p50/p95 stock",
        "queued→running p50/p95 sluice",
        "scheduled→running p50 stock",
        "scheduled→running p50 sluice",
    ):
        table.add_column(column)
    for name, s in stock["workloads"].items():
        t = tuned["workloads"][name]
        table.add_row(
            name,
            rate(s),
            rate(t),
            f"{t['tasks_per_s'] / s['tasks_per_s']:.2f}×",
            f"{s['queued_to_running_p50']} / {s['queued_to_running_p95']} s",
            f"{t['queued_to_running_p50']} / {t['queued_to_running_p95']} s",
            f"{s['scheduled_to_running_p50']} s",
            f"{t['scheduled_to_running_p50']} s",
        )
    console.print(table)
    cpu = Table(title="CPU per task (ms): stock → sluice (a task process's CPU counts in its worker)")
    kinds = sorted(
        {kind for result in (stock, tuned) for w in result["workloads"].values() for kind in w["cpu_ms_per_task"]}
    )
    cpu.add_column("workload")
    for kind in [*kinds, "total"]:
        cpu.add_column(kind)
    for name, s in stock["workloads"].items():
        before, after = s["cpu_ms_per_task"], tuned["workloads"][name]["cpu_ms_per_task"]
        cells = [f"{before.get(kind, 0)} → {after.get(kind, 0)}" for kind in kinds]
        cpu.add_row(name, *cells, f"{sum(before.values())} → {sum(after.values())}")
    console.print(cpu)
    memory = Table(title="PSS per component after the runs (MB)")
    for column in ("component", "stock", "sluice"):
        memory.add_column(column)
    for name in tuned["pss_mb"]:
        memory.add_row(name, str(stock["pss_mb"].get(name, "-")), str(tuned["pss_mb"][name]))
    console.print(memory)


def print_ablations(tuned: dict, ablations: dict[str, dict]) -> None:
    table = Table(title="What each tuning key is worth: Sluice's tuning with one key at Airflow's value (tasks/s)")
    table.add_column("workload")
    table.add_column("sluice")
    for key in ablations:
        table.add_column(f"without {key}")
    for name, figures in tuned["workloads"].items():
        cells = [rate(figures)]
        for result in ablations.values():
            other = result["workloads"][name]
            cells.append(f"{rate(other)} ({figures['tasks_per_s'] / other['tasks_per_s']:.2f}× with)")
        table.add_row(name, *cells)
    console.print(table)


def plot(results: dict[str, dict], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(results["stock"]["workloads"])
    positions = range(len(names))
    written = []
    for metric, title, filename in (
        ("tasks_per_s", "No-op task throughput (tasks/s, higher is better)", "throughput.png"),
        ("queued_to_running_p50", "Queued→running p50 (s, lower is better)", "latency.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.38
        for offset, tuning in ((-width / 2, "stock"), (width / 2, "sluice")):
            values = [results[tuning]["workloads"][n][metric] for n in names]
            bars = ax.bar([p + offset for p in positions], values, width, label=tuning)
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks(list(positions), names, fontsize=8)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        target = folder / filename
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--tunings", nargs="+", default=["stock", "sluice"], choices=TUNING_NAMES)
    parser.add_argument(
        "--without",
        nargs="*",
        default=[],
        choices=sorted(STOCK_VALUES),
        help="also run Sluice's tuning with this one key at Airflow's value (what each key is worth)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each workload; the median run is reported")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plots", type=Path, help="folder for throughput.png and latency.png")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    tuned = tuning_settings("sluice")
    at_stock = [key for key in args.without if tuned.get(TUNING_KEYS[key], "") == STOCK_VALUES[key]]
    if at_stock:
        parser.error(f"--without {' '.join(at_stock)}: Sluice's tuning already has Airflow's value; nothing to compare")

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    dags, platform = work / "dags", work / "platform.yaml"
    dags.mkdir()
    platform.write_text(PLATFORM)
    workloads = write_dags(dags, args.tasks)
    db = f"sluice_bench_{int(time.time())}"
    results = {
        tuning: bench_tuning(tuning, workloads, dags, platform, db, repeat=args.repeat) for tuning in args.tunings
    }
    ablations = {
        key: bench_tuning("sluice", workloads, dags, platform, db, without=key, repeat=args.repeat)
        for key in args.without
    }
    machine = {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    if {"stock", "sluice"} <= set(results):
        print_table(results)
        for name in results["stock"]["workloads"]:
            tuned, stock = results["sluice"]["workloads"][name], results["stock"]["workloads"][name]
            ratio = tuned["tasks_per_s"] / stock["tasks_per_s"]
            results.setdefault("ratios", {})[name] = round(ratio, 2)
        if args.plots:
            for path in plot(results, args.plots):
                console.print(f"plot: {path}")
    if ablations and "sluice" in results:
        print_ablations(results["sluice"], ablations)
        results["without"] = ablations
    results["machine"] = machine
    results["repeat"] = args.repeat
    results["median_ratio"] = round(statistics.median(results.get("ratios", {"-": 0}).values()), 2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        console.print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
