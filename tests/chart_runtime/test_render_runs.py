"""The default chart, installed on this machine and used (see install.py): each test states one behaviour.

Values differ from the defaults only where this machine has no cluster: moto's S3 as the artifact store and the
API stand-in's address. The bundled PostgreSQL, Redis and statsd exporter are the chart's own pods
(test_bundled_services.py); the external-services path is test_external_services.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import psycopg2
import pytest
from sluice.quantity import parse_quantity

from tests.chart_runtime.install import PLATFORM_REPO, RELEASE, Installed
from tests.chart_runtime.keda import Sampler, triggers
from tests.chart_runtime.memory import PeakMemory, read, task_processes, tree
from tests.support.airflow_api import AdminApi
from tests.support.containers import STEP_IMAGE, require_image

pytestmark = pytest.mark.integration
CORE = ("api-server", "scheduler", "dag-processor", "triggerer")
RUN_BOUND = 900.0  # a loaded 2-core machine has taken over 600 s for the example pipeline


@pytest.fixture(scope="module")
def admin(installed: Installed) -> AdminApi:
    password = installed.secret(f"{RELEASE}-admin", "password")
    return AdminApi(installed.api_url, "admin", password)


@dataclass
class Run:
    dag_id: str
    run_id: str
    state: str
    tasks: list[dict[str, Any]]
    sampler: Sampler
    after: dict[str, float]  # each pool's query value once the run is over
    memory: PeakMemory  # a default pool worker pod while it ran


def _default_workers(installed: Installed) -> list[int]:
    """The main process of the first default-pool worker pod's running container (it leads the pod's process tree):
    a limit is per pod, so one pod is measured."""
    pods = installed.kubelet.pods_of(f"Deployment/{RELEASE}-worker-default")[:1]
    return [run.proc.pid for pod in pods for run in pod.containers if run.proc is not None and run.exit_code is None]


def _run(installed: Installed, admin: AdminApi, dag_id: str) -> Run:
    admin.wait_for_dag(dag_id, timeout=180)
    admin.unpause(dag_id)
    memory = PeakMemory(lambda: _default_workers(installed), busy=task_processes)
    with Sampler(triggers(installed)) as sampler, memory:
        run_id = admin.trigger(dag_id)
        run = admin.wait_for_run(dag_id, run_id, RUN_BOUND)
        # Unpausing a scheduled DAG also starts its latest scheduled run: "after" is once every run is over.
        for other in admin.dag_runs(dag_id):
            admin.wait_for_run(dag_id, other["dag_run_id"], RUN_BOUND)
    tasks = admin.task_instances(dag_id, run_id)
    return Run(dag_id, run_id, run["state"], tasks, sampler, sampler.sample().value, memory)


@pytest.fixture(scope="module")
def pipeline(installed: Installed, admin: AdminApi) -> Run:
    """The example ML pipeline, triggered through the REST API, KEDA's queries sampled while it runs."""
    return _run(installed, admin, "ml_training_pipeline")


@pytest.fixture(scope="module")
def burst(installed: Installed, admin: AdminApi, pipeline: Run) -> Run:
    """48 tasks at once on the default pool (more than stock parallelism), one on each other queue."""
    return _run(installed, admin, "smoke_burst")


def _pool_of(installed: Installed, ti: dict[str, Any]) -> str:
    """The pool whose worker ran a task instance: its hostname is the pod IP (sluice.hostname.pod_ip)."""
    pod = installed.kubelet.pod_by_ip(ti["hostname"])
    assert pod is not None, f"{ti['task_id']} ran on {ti['hostname']!r}, no pod of this install"
    return pod.workload.removeprefix(f"Deployment/{RELEASE}-worker-") if "-worker-" in pod.workload else pod.workload


def _pools(installed: Installed) -> dict[str, list[str]]:
    return {t.pool: t.queues for t in triggers(installed)}


# ---- installing --------------------------------------------------------------------------------------
def test_the_install_converges_without_helm_hooks(installed: Installed, prove) -> None:
    hooks = [d["metadata"]["name"] for d in installed.docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert hooks == []
    prove(f"no Helm hook; all applied at once, Jobs complete and pods ready in {installed.converged_seconds:.0f} s")


def test_the_migration_job_succeeds_and_creates_the_pool_load_index(installed: Installed, prove) -> None:
    job = installed.named("Job", f"{RELEASE}-migrate-")
    pod = installed.kubelet.pod_of(f"Job/{job['metadata']['name']}")
    assert pod.phase == "Succeeded" and pod.containers[0].exit_code == 0, pod.describe()
    with psycopg2.connect(installed.db_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
            ("sluice_ti_pool_load",),
        )
        assert cur.fetchall() == [(True,)]
    prove(f"{job['metadata']['name']} exit 0 in {pod.containers[0].seconds:.0f} s; index sluice_ti_pool_load valid")


def test_every_airflow_pod_waits_for_migrations_and_passes(installed: Installed, prove) -> None:
    waited = []
    for pod in installed.pods:
        for run in pod.init:
            assert run.name == "wait-for-migrations"
            assert run.exit_code == 0, pod.describe()
            waited.append(f"{pod.workload.split('/')[1].removeprefix(RELEASE + '-')} {run.seconds:.0f} s")
    deployments = [  # the Airflow components' (the bundled services' pods have no init container)
        d
        for d in installed.objects.of_kind("Deployment")
        if d["spec"]["template"]["spec"]["containers"][0]["image"].startswith(PLATFORM_REPO)
    ]
    assert len(waited) >= len(deployments)
    prove("airflow db check-migrations exit 0 in " + ", ".join(waited))


@pytest.mark.parametrize("component", CORE)
def test_each_core_component_passes_its_liveness_probe(installed: Installed, component: str, prove) -> None:
    pods = installed.kubelet.pods_of(f"Deployment/{RELEASE}-{component}")
    assert pods, f"no pod of {component}"
    for pod in pods:  # every replica (two schedulers)
        ok, detail = installed.kubelet.probe(pod, component, "livenessProbe")
        assert ok, f"{component}: {detail}\n{pod.describe()}"
        assert pod.container(component).restarts == 0, pod.describe()
    prove(f"{len(pods)} pod(s), none restarted; livenessProbe {detail.splitlines()[0][:60]}")


def test_each_worker_consumes_exactly_its_pools_queues(installed: Installed, prove) -> None:
    from celery import Celery

    app = Celery("chart-runtime", broker=installed.broker_url, set_as_current=False)
    seen = {}
    for pool, queues in _pools(installed).items():
        pods = installed.kubelet.pods_of(f"Deployment/{RELEASE}-worker-{pool}")
        assert pods, f"no worker of pool {pool}"
        for pod in pods:
            ok, detail = installed.kubelet.probe(pod, "worker", "livenessProbe")
            assert ok, f"worker {pool}: {detail}"
            node = f"celery@{pod.name}"
            replies = app.control.inspect(destination=[node], timeout=10).active_queues() or {}
            assert node in replies, f"{node} did not answer; replies from {sorted(replies)}"
            seen[pool] = sorted(q["name"] for q in replies[node])
            assert seen[pool] == sorted(queues)
    prove("; ".join(f"{pool}: {', '.join(q)}" for pool, q in seen.items()))


# ---- logging in ------------------------------------------------------------------------------------------
def test_the_admin_secret_logs_in_and_lists_dags(installed: Installed, admin: AdminApi, prove) -> None:
    dags = admin._call("GET", "/dags")
    assert dags["total_entries"] >= 1
    prove(f"token from /auth/token with the {RELEASE}-admin Secret; /api/v2/dags lists {dags['total_entries']} DAGs")


def test_a_wrong_password_and_an_anonymous_call_are_refused(installed: Installed, prove) -> None:
    wrong = httpx.post(f"{installed.api_url}/auth/token", json={"username": "admin", "password": "not-it"}, timeout=30)
    anonymous = httpx.get(f"{installed.api_url}/api/v2/dags", timeout=30)
    assert (wrong.status_code, anonymous.status_code) == (401, 401)
    prove("wrong password → 401, no token → 401")


# ---- running --------------------------------------------------------------------------------------------
def test_the_example_pipeline_succeeds_each_task_on_its_pool(installed: Installed, pipeline: Run, prove) -> None:
    assert pipeline.state == "success", {t["task_id"]: t["state"] for t in pipeline.tasks}
    pools = _pools(installed)
    ran: dict[str, int] = {}
    for ti in pipeline.tasks:
        assert ti["state"] == "success", ti
        pool = _pool_of(installed, ti)
        assert ti["queue"] in pools[pool], f"{ti['task_id']} (queue {ti['queue']}) ran on pool {pool}"
        ran[pool] = ran.get(pool, 0) + 1
    prove(f"{len(pipeline.tasks)} tasks success via REST: " + ", ".join(f"{p} {n}" for p, n in sorted(ran.items())))


def test_ml_steps_ran_as_pods_of_the_step_image(installed: Installed, pipeline: Run, prove) -> None:
    steps = [
        p
        for p in installed.api.created
        if p["spec"]["containers"][0]["image"].startswith("ghcr.io/sluice-ml/ml-steps:")
    ]
    assert steps, "no step pod was created through the Kubernetes API"
    for manifest in steps:
        pod = installed.kubelet.pods[manifest["metadata"]["name"]]
        assert pod.phase == "Succeeded", pod.describe()
    made = f"{len(steps)} step pods created through the API by the kubernetes launcher"
    prove(f"{made}, all exit 0, run {installed.steps_in}")


def test_step_pods_ran_in_the_built_step_image_as_their_pod_says(installed: Installed, pipeline: Run, prove) -> None:
    engine = require_image(STEP_IMAGE)
    assert installed.step_engine is not None, f"{STEP_IMAGE} is built, yet step pods ran {installed.steps_in}"
    steps = [p for p in installed.api.created if p["spec"]["containers"][0]["image"] == STEP_IMAGE]
    assert steps, f"no pod of {STEP_IMAGE} was created through the Kubernetes API"
    limits = set()
    for manifest in steps:
        pod = installed.kubelet.pods[manifest["metadata"]["name"]]
        box = pod.containers[0].in_engine
        assert box is not None and box.container_id, f"not run in a container:\n{pod.describe()}"
        assert box.image == STEP_IMAGE, f"ran {box.image}, not {STEP_IMAGE}"
        memory = manifest["spec"]["containers"][0]["resources"]["limits"]["memory"]
        assert (box.spec.user, box.spec.read_only_root, box.spec.memory_bytes) == (
            "10001:10001",
            True,
            parse_quantity(memory),
        ), box.spec
        limits.add(memory)
    left = installed.kubelet.containers(engine)
    assert left == [], f"containers of ended pods still exist: {left}"
    prove(
        f"{len(steps)} step pods ran in {STEP_IMAGE} through {engine.name}: user 10001:10001, read-only root, "
        f"memory limits {', '.join(sorted(limits))}; each container removed when its pod ended"
    )


def test_each_scaledobject_query_counts_its_pools_load(installed: Installed, pipeline: Run, prove) -> None:
    sampler = pipeline.sampler
    assert sampler.samples and not sampler.mismatches(), sampler.mismatches()[:10]
    assert sampler.peak("default") > 0 and sampler.peak("highmem") > 0
    assert pipeline.after == {pool: 0.0 for pool in pipeline.after}
    peaks = ", ".join(f"{pool} {sampler.peak(pool):.0f}" for pool in pipeline.after)
    prove(f"{len(sampler.samples)} samples equal to a raw count; peak replicas wanted: {peaks}; all 0 after")


def test_a_burst_beyond_stock_parallelism_is_visible_to_keda(installed: Installed, burst: Run, prove) -> None:
    assert burst.state == "success", {t["task_id"]: t["state"] for t in burst.tasks}
    assert not burst.sampler.mismatches(), burst.sampler.mismatches()[:10]
    naps = len([t for t in burst.tasks if t["task_id"] == "nap"])
    concurrency = next(t.concurrency for t in triggers(installed) if t.pool == "default")
    # Stock [core] parallelism (32) would hold the rest `scheduled`, where the query cannot see them: at most
    # 32 / concurrency replicas wanted. The chart's derived parallelism lets every task be queued.
    assert burst.sampler.peak("default") * concurrency > 32
    assert burst.after == {pool: 0.0 for pool in burst.after}
    prove(f"{naps} tasks on default: peak {burst.sampler.peak('default'):.0f} replicas wanted (stock caps at 4)")


def test_every_queue_reaches_its_pool_and_kubernetes_its_executor(installed: Installed, burst: Run, prove) -> None:
    pools = _pools(installed)
    by_task = {t["task_id"]: t for t in burst.tasks}
    for task_id, pool in (("on_highmem", "highmem"), ("on_gpu", "gpu")):
        assert by_task[task_id]["state"] == "success"
        assert _pool_of(installed, by_task[task_id]) == pool and by_task[task_id]["queue"] in pools[pool]
    kube = by_task["on_kubernetes"]
    assert kube["state"] == "success" and kube["executor"] == "KubernetesExecutor", kube
    pod = installed.kubelet.pod_by_ip(kube["hostname"])
    assert pod is not None and pod.workload.startswith("Pod/") and pod.phase == "Succeeded"
    prove(f"highmem, gpu on their pools; kubernetes queue → KubernetesExecutor pod {pod.name}")


def test_two_schedulers_run_at_once_and_each_task_runs_once(
    installed: Installed, pipeline: Run, burst: Run, prove
) -> None:
    """scheduler.replicas 2: two pods, each its own SchedulerJob heartbeating, both queueing the burst (each may
    hold only its share of the derived parallelism), and no task instance run twice."""
    pods = installed.kubelet.pods_of(f"Deployment/{RELEASE}-scheduler")
    assert len(pods) == installed.values["scheduler"]["replicas"] == 2
    assert len({p.ip for p in pods}) == 2 and all(p.container("scheduler").restarts == 0 for p in pods)
    env = {e["name"]: e.get("value") for e in pods[0].spec["containers"][0]["env"]}
    threshold = float(env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD"])
    with psycopg2.connect(installed.db_url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT hostname, id, extract(epoch FROM now() - latest_heartbeat) FROM job"
            " WHERE job_type = 'SchedulerJob' AND state = 'running' ORDER BY id"
        )
        alive = {host: (job_id, float(age)) for host, job_id, age in cur.fetchall()}
        cur.execute(
            "SELECT queued_by_job_id, count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s GROUP BY 1",
            (burst.dag_id, burst.run_id),
        )
        queued_by = dict(cur.fetchall())
        cur.execute(
            "SELECT count(*) FROM task_instance_history WHERE (dag_id, run_id) IN ((%s, %s), (%s, %s))",
            (pipeline.dag_id, pipeline.run_id, burst.dag_id, burst.run_id),
        )
        (history,) = cur.fetchone()
    for pod in pods:
        assert pod.ip in alive, f"no running SchedulerJob of {pod.name} ({pod.ip}): {alive}"
        assert alive[pod.ip][1] < threshold, f"{pod.name}'s heartbeat is {alive[pod.ip][1]:.0f} s old"
    jobs = {alive[pod.ip][0] for pod in pods}
    assert set(queued_by) == jobs, f"burst task instances queued by jobs {queued_by}; schedulers' jobs {jobs}"
    tries = sorted({t["try_number"] for run in (pipeline, burst) for t in run.tasks})
    assert (tries, history) == ([1], 0), f"try numbers {tries}, {history} task instance history rows"
    ages = ", ".join(f"{alive[p.ip][1]:.0f} s" for p in pods)
    shares = " + ".join(str(queued_by[job]) for job in sorted(jobs))
    prove(f"2 SchedulerJobs running (heartbeats {ages} old); the burst queued {shares} by each; every try_number 1")


def test_task_logs_outlive_the_worker_in_the_artifact_store(installed: Installed, pipeline: Run, admin, prove) -> None:
    import boto3

    ti = next(t for t in pipeline.tasks if t["task_id"] == "validate")
    s3 = boto3.client(
        "s3",
        endpoint_url=installed.s3_endpoint,
        aws_access_key_id="smoke",
        aws_secret_access_key="smoke",
        region_name="us-east-1",
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="sluice-smoke", Prefix="logs/").get("Contents", [])]
    mine = [k for k in keys if "dag_id=ml_training_pipeline" in k and "task_id=validate" in k]
    assert mine, f"no remote log of validate among {len(keys)} objects under s3://sluice-smoke/logs/"
    path = f"/dags/ml_training_pipeline/dagRuns/{pipeline.run_id}/taskInstances/validate/logs/{ti['try_number']}"
    log = admin.http.get(path, params={"full_content": True}, headers={"Accept": "application/json"})
    assert log.status_code == 200, log.text[:500]
    # The worker deleted its local copy, and its log server is not reachable from here: the store is the source.
    assert "s3://sluice-smoke/logs/dag_id=ml_training_pipeline" in log.text, log.text[:1000]
    prove(f"{len(keys)} log objects under s3://sluice-smoke/logs/; the API serves validate's log from there")


# ---- the kubelet's view, after all of the above ------------------------------------------------------------
def test_no_container_was_restarted_by_a_crash_or_its_probes(
    installed: Installed, pipeline: Run, burst: Run, prove
) -> None:
    """The probers ran every rendered probe at its period all along: no main container was restarted (a crash
    or failureThreshold liveness failures in a row would have); each probe's slowest try (a try that times out
    counts as failed at its timeoutSeconds x the harness factor), its failures and tries are printed. (An init
    container may have restarted: wait-for-migrations exits while the database is not yet ready.)"""
    restarted, slowest = [], {}
    for workload in installed.kubelet.workloads.values():
        for pod in workload.live():
            for run in pod.containers:
                if run.restarts:
                    restarted.append(
                        f"{pod.name}/{run.name}: {run.restarts} restarts, last {run.last}, {run.events[-3:]}"
                    )
                for kind, record in run.probes.items():
                    key = f"{workload.name.removeprefix(RELEASE + '-')} {kind.removesuffix('Probe')}"
                    timeout = float(run.spec[kind].get("timeoutSeconds", 1))
                    seen = slowest.get(key, (0.0, timeout, 0, 0))
                    slowest[key] = (
                        max(seen[0], record.slowest),
                        timeout,
                        seen[2] + record.failures,
                        seen[3] + record.tries,
                    )
    assert restarted == [], "\n".join(restarted)
    assert slowest, "no probe ran"
    prove(
        f"no restart; probe timeouts x{installed.kubelet.probe_timeout_scale:g}; slowest try / rendered timeout "
        "(failed of tries): "
        + ", ".join(f"{k} {s:.1f}/{t:g} s ({f} of {n})" for k, (s, t, f, n) in sorted(slowest.items()))
    )


def test_the_default_pools_memory_limit_holds_its_workers_at_full_concurrency(
    installed: Installed, pipeline: Run, burst: Run, prove
) -> None:
    """The default pool's limit sized from a measurement, not a guess: its worker pod, sampled every 0.5 s while
    the example pipeline (MLStepOperator tasks watching step pods) and the burst (48 tasks, every slot busy) ran,
    stays under its rendered memory limit with a quarter to spare (what its cgroup would charge: tests.chart_runtime
    .memory), and its request covers the pod at rest. The kernel kills a worker at its limit mid-task."""
    worker = next(
        d for d in installed.objects.of_kind("Deployment") if d["metadata"]["name"] == f"{RELEASE}-worker-default"
    )
    container = worker["spec"]["template"]["spec"]["containers"][0]
    limit = int(parse_quantity(container["resources"]["limits"]["memory"]))
    request = int(parse_quantity(container["resources"]["requests"]["memory"]))
    concurrency = next(t.concurrency for t in triggers(installed) if t.pool == "default")
    figures = []
    for run in (pipeline, burst):
        peak = run.memory.peak
        assert run.memory.samples > 0 and peak.processes > 0, f"{run.dag_id}: no sample of the default worker"
        assert peak.charged <= 0.75 * limit, (
            f"{run.dag_id}: the default worker peaked at {peak.charged / 2**20:.0f} MiB charged "
            f"({peak.pss / 2**20:.0f} MiB PSS, {peak.processes} processes) against a {limit / 2**20:.0f} MiB limit"
        )
        figures.append(
            f"{run.dag_id} {peak.charged / 2**20:.0f} MiB (PSS {peak.pss / 2**20:.0f}, {run.memory.peak_busy} tasks at "
            f"once)"
        )
    assert burst.memory.peak_busy == concurrency, f"the burst had {burst.memory.peak_busy} of {concurrency} slots busy"
    idle = read(_tree_of(installed))
    assert idle.charged <= request, (
        f"at rest the worker holds {idle.charged / 2**20:.0f} MiB, over its {request / 2**20:.0f} MiB request; "
        f"peaks: {'; '.join(figures)}"
    )
    prove(
        f"limit {limit / 2**20:.0f} MiB, request {request / 2**20:.0f} MiB (concurrency {concurrency}): peaks "
        + "; ".join(figures)
        + f"; at rest {idle.charged / 2**20:.0f} MiB"
    )


def _tree_of(installed: Installed) -> list[int]:
    return [pid for root in _default_workers(installed) for pid in tree(root)]
