"""The example pipeline on the local stack, triggered through the REST API, every task on its pool's workers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sluice import demo
from sluice.platform import load_platform
from sluice.scaling import pool_load_sql
from sluice.stack.config import tuning_settings
from sluice.stack.status import Health
from sluice.worker.report import Patched, PatchState
from sluice_steps import synth

from tests.integration.stack.conftest import HERE, RUN_BOUND, Running

pytestmark = pytest.mark.integration
PLATFORM = load_platform(HERE / "platform.yaml")


class LoadSampler(threading.Thread):
    """Samples the chart's scaling query per pool while a run is in flight."""

    def __init__(self, db_url: str) -> None:
        super().__init__(daemon=True)
        self.engine = sa.create_engine(db_url)
        self.peak = {pool.name: 0.0 for pool in PLATFORM.pools}
        self.done = threading.Event()

    def sample(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            return {
                pool.name: float(conn.execute(sa.text(pool_load_sql(pool))).scalar() or 0) for pool in PLATFORM.pools
            }

    def run(self) -> None:
        while not self.done.wait(0.5):
            for name, value in self.sample().items():
                self.peak[name] = max(self.peak[name], value)


@pytest.fixture(scope="module")
def pipeline_run(local_stack: Running) -> tuple[str, dict, LoadSampler]:
    sampler = LoadSampler(local_stack.db_url)
    sampler.start()
    try:
        # The DAG is @daily: a manual run at its next logical date stands in for that scheduled run,
        # so unpausing it does not start a second pipeline run next to ours.
        api = local_stack.api
        dag = api.wait_for_dag("ml_training_pipeline")
        # Its sources, where the stack's DAGs look (what `sluice demo --stack` prepares from the DAG's declaration).
        demo.prepare("ml_training_pipeline", demo.declared(Path(dag["fileloc"])), local_stack.stack.home / "demo-data")
        run_id = api.trigger("ml_training_pipeline", logical_date=dag["next_dagrun_logical_date"])
        api.unpause("ml_training_pipeline")
        run = api.wait_for_run("ml_training_pipeline", run_id, 600)
    finally:
        sampler.done.set()
        sampler.join()
    return run_id, run, sampler


def test_stack_comes_up_healthy_with_its_pools(local_stack: Running) -> None:
    status = local_stack.stack.status()
    assert status.healthy, [(c.name, c.health) for c in status.components]
    kinds = {c.kind for c in status.components}
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "worker", "supervisor", "redis"} <= kinds
    assert [p.pool.name for p in status.pools] == [p.name for p in PLATFORM.pools]


def test_example_pipeline_succeeds_through_the_rest_api(pipeline_run: tuple[str, dict, LoadSampler]) -> None:
    _, run, _ = pipeline_run
    assert run["state"] == "success"


def test_every_task_ran_on_a_worker_of_the_pool_serving_its_queue(
    local_stack: Running, pipeline_run: tuple[str, dict, LoadSampler]
) -> None:
    run_id, _, _ = pipeline_run
    tis = local_stack.api.task_instances("ml_training_pipeline", run_id)
    assert tis
    pools_used = set()
    for ti in tis:
        serving = PLATFORM.pool_for_queue(ti["queue"])
        assert serving is not None, ti
        worker_pool = ti["hostname"].rsplit("-", 1)[0]  # local workers are named <pool>-<n>
        assert worker_pool == serving.name, f"{ti['task_id']}[{ti['map_index']}] on {ti['hostname']} ({ti['queue']})"
        pools_used.add(worker_pool)
    assert pools_used == {"default", "highmem"}


def test_every_task_took_its_dag_from_its_workers_parse(
    local_stack: Running, pipeline_run: tuple[str, dict, LoadSampler]
) -> None:
    """tuning.workerDagCache: the task processes reuse their pool process's parse of the unchanged file."""
    run_id, _, _ = pipeline_run
    run_logs = local_stack.stack.home / "logs" / "airflow" / "dag_id=ml_training_pipeline" / f"run_id={run_id}"
    logs = sorted(run_logs.rglob("attempt=*.log"))
    assert len(logs) >= 12, f"expected the run's task logs under {run_logs}"
    parsed_again = [
        str(log.relative_to(run_logs)) for log in logs if "taken from the worker's parse" not in log.read_text()
    ]
    assert not parsed_again


def execution_api_requests(api_server_log: Path) -> list[tuple[str, str, str]]:
    """(method, task instance id, action) of each Execution-API request in the api-server's access log."""
    out = []
    for line in api_server_log.read_text().splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # the console renderer's colours
        path = re.search(r"path=/execution/task-instances/([0-9a-f-]{36})/(\w+)", line)
        method = re.search(r"method=(\w+)", line)
        if "request finished" in line and path and method:
            out.append((method.group(1), path.group(1), path.group(2)))
    return out


def test_no_task_heartbeated_before_a_whole_interval_had_passed(
    local_stack: Running, pipeline_run: tuple[str, dict, LoadSampler]
) -> None:
    """tuning.workerStartHeartbeat: the start is the first heartbeat, so a task heartbeats once per whole
    interval it ran (Airflow alone sends one right after the start, even for a one-second task)."""
    run_id, _, _ = pipeline_run
    interval = float(tuning_settings("sluice")["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"])
    requests = execution_api_requests(local_stack.stack.home / "logs" / "api-server.log")
    starts = Counter(ti_id for method, ti_id, action in requests if (method, action) == ("PATCH", "run"))
    beats = Counter(ti_id for method, ti_id, action in requests if (method, action) == ("PUT", "heartbeat"))
    tis = local_stack.api.task_instances("ml_training_pipeline", run_id)
    assert [ti["task_id"] for ti in tis if starts[ti["id"]] != 1] == [], f"each task's start is logged: {requests[:3]}"
    early = {
        f"{ti['task_id']}[{ti['map_index']}]": (beats[ti["id"]], ti["duration"])
        for ti in tis
        if beats[ti["id"]] > ti["duration"] // interval
    }
    assert early == {}, f"(heartbeats, seconds run) of tasks that heartbeated more than once per {interval} s"


def test_scaling_query_counts_each_pool_mid_run_and_zero_after(
    local_stack: Running, pipeline_run: tuple[str, dict, LoadSampler]
) -> None:
    _, _, sampler = pipeline_run
    assert sampler.peak["default"] > 0
    assert sampler.peak["highmem"] > 0  # the highmem training steps were queued/running
    local_stack.wait_for(lambda: sampler.sample() == {"default": 0.0, "highmem": 0.0}, "pool load back to 0", 60)


def _sluice(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    sluice = Path(sys.executable).with_name("sluice")
    env = {"COLUMNS": "200", "PATH": str(sluice.parent), **(env or {})}
    return subprocess.run([str(sluice), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_runs_the_sharded_pipeline_on_the_stack_with_steps_on_their_pools(
    local_stack: Running, tmp_path: Path
) -> None:
    """`sluice demo <name> --stack`: triggered through the stack's API, run by its Celery pools, read back from
    its database; the shard count decides the fan-out there too."""
    source = tmp_path / "set"
    synth.generate(str(source), rows=12_000, shard_rows=4_000)
    local_stack.stack.wait_healthy()
    conf = json.dumps({"source": str(source), "sample_rows": 2000})
    out = _sluice(
        "demo",
        "sharded_training",
        "--stack",
        "--conf",
        conf,
        env={"SLUICE_STACK_HOME": str(local_stack.stack.home)},
        timeout=RUN_BOUND + 60,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "local stack http://" in out.stdout
    assert "mapped steps: 12 (featurize 3, ingest 3, score 3, train_sample 3)" in out.stdout
    (run_id,) = re.findall(r"run (\S+): success in", out.stdout)
    pools = {ti["task_id"]: ti["queue"] for ti in local_stack.api.task_instances("sharded_training", run_id)}
    assert pools["ingest"] == pools["score"] == "default" and pools["train_sgd"] == pools["train_sample"] == "highmem"


def test_status_command_shows_components_and_pools(local_stack: Running) -> None:
    local_stack.stack.wait_healthy()  # earlier tests restart components; this one is about the command
    out = _sluice("status", "--home", str(local_stack.stack.home))
    assert out.returncode == 0, out.stdout + out.stderr
    for expected in ("scheduler", "dag-processor", "triggerer", "api-server", "healthy", "default", "highmem"):
        assert expected in out.stdout


def test_every_worker_runs_sluices_patches_and_says_so(local_stack: Running) -> None:
    """The tuning's three worker patches pass sluice.compat's checks on the pinned Airflow: each worker installs
    them at start, logs one line saying so, and `sluice status` shows them."""
    status = local_stack.stack.wait_healthy()
    # Serving workers only: one the autoscaler is draining may exit between the two reads `status` makes of it
    # (alive, then its report), and then shows as alive without patches (CI, 1af0987).
    workers = [c for c in status.components if c.kind == "worker" and c.health.state is Health.HEALTHY]
    active = {name: PatchState(Patched.ACTIVE) for name in ("dag-cache", "exit-wakeup", "start-heartbeat")}
    assert workers and all(c.patches == active for c in workers), [(c.name, c.patches) for c in workers]
    for worker in workers:
        log = Path(worker.log).read_text()
        lines = [line for line in log.splitlines() if "Sluice worker patches" in line]
        assert lines and "dag-cache active, exit-wakeup active, start-heartbeat active" in lines[-1], worker.log
        assert "Sluice worker patch " not in log, "no patch was refused"
    out = _sluice("status", "--home", str(local_stack.stack.home))
    assert "dag-cache active, exit-wakeup active, start-heartbeat active" in out.stdout, out.stdout


def test_up_refuses_a_second_stack_in_the_same_home(local_stack: Running) -> None:
    out = _sluice("up", "--home", str(local_stack.stack.home))
    assert out.returncode == 1
    assert "already running" in out.stdout
    assert local_stack.stack.status().healthy  # the running stack is untouched


def test_down_with_nothing_started_touches_nothing(tmp_path: Path) -> None:
    out = _sluice("down", "--home", str(tmp_path / "empty"))
    assert out.returncode == 0
    assert "nothing to stop" in out.stdout


def test_every_worker_restores_its_prefetch_at_once_after_a_broker_reconnect(local_stack: Running) -> None:
    """Asked over the broker, each live worker reports the settings Sluice pins: acks late, prefetch one per slot,
    and no prefetch-count reduction after a connection loss (with it, tasks waiting through a Redis restart ran
    in waves: each worker took one, then one more per finished task)."""
    from celery import Celery

    local_stack.stack.wait_healthy()
    app = Celery(broker=local_stack.stack.state().config.broker_url)
    replies = app.control.inspect(timeout=10).conf(with_defaults=False) or {}
    assert replies, "no worker answered"
    for worker, conf in replies.items():
        assert conf.get("worker_enable_prefetch_count_reduction") is False, (worker, conf)
        assert conf.get("worker_prefetch_multiplier") == 1 and conf.get("task_acks_late") is True, (worker, conf)
