"""End to end: the example training pipeline, first run and cached re-run, on the embedded default and on
the local stack (stock Airflow settings vs Sluice's tuning), all in one invocation.

    python bench/pipeline_e2e.py --json bench/results/pipeline_e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sluice import demo
from sluice.stack.api import AirflowApi
from sluice.stack.config import StackConfig
from sluice.stack.local import LocalStack
from sluice.stack.services import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support: the benches share the test harness's helpers

from tests.support.postgres import drop_database  # noqa: E402

DAG = "ml_training_pipeline"
console = Console(width=140)


def embedded() -> dict[str, float]:
    """``sluice demo`` twice in a fresh home: wall time of each (process start to exit)."""
    home = tempfile.mkdtemp(prefix="sluice-bench-demo-")
    env = {**os.environ, "SLUICE_HOME": home}
    env.pop("SLUICE_DEMO_DATA", None)
    sluice = str(Path(sys.executable).with_name("sluice"))
    out = {}
    for label in ("first_s", "cached_s"):
        started = time.monotonic()
        subprocess.run([sluice, "demo", DAG], env=env, check=True, stdout=subprocess.DEVNULL)
        out[label] = round(time.monotonic() - started, 1)
    return out


def on_stack(tuning: str) -> dict[str, float]:
    """Trigger the pipeline twice through the REST API; seconds from trigger to the run's end."""
    stack = LocalStack(Path(tempfile.mkdtemp(prefix=f"sluice-bench-e2e-{tuning}-")) / "stack")
    config = StackConfig(
        db_url=f"postgresql+psycopg2://postgres@127.0.0.1:5432/sluice_bench_e2e_{tuning}_{os.getpid()}",
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        api_port=free_port(),
        tuning=tuning,  # type: ignore[arg-type]
    )
    stack.up(config)
    try:
        api = AirflowApi(config.api_url, "admin", stack.secrets().admin_password)
        dag = api.wait_for_dag(DAG, timeout=300)
        # The example's sources where the stack's DAGs look, as `sluice demo --stack` makes them.
        demo.prepare(DAG, demo.declared(Path(dag["fileloc"])), stack.home / "demo-data")
        logical_date = dag["next_dagrun_logical_date"]  # stands in for the @daily run: no second run
        out = {}
        for label in ("first_s", "cached_s"):
            started = time.monotonic()
            run_id = api.trigger(DAG, logical_date=logical_date if label == "first_s" else None)
            api.unpause(DAG)
            run = api.wait_for_run(DAG, run_id, timeout=1800)
            if run["state"] != "success":
                raise RuntimeError(f"{DAG} {run_id} ended {run['state']}")
            out[label] = round(time.monotonic() - started, 1)
        return out
    finally:
        stack.down()
        drop_database(stack.state().config.db_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {"embedded (SQLite, dag.test)": embedded()}
    for tuning in ("stock", "sluice"):
        results[f"local stack, {tuning}"] = on_stack(tuning)
    table = Table(title=f"{DAG} end to end (seconds; cached = every step whose inputs did not change is reused)")
    for column in ("where", "first run", "cached re-run"):
        table.add_column(column)
    for where, figures in results.items():
        table.add_row(where, str(figures["first_s"]), str(figures["cached_s"]))
    console.print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
