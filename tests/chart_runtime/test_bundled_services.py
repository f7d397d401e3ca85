"""The chart's bundled services (its default values), run from their rendered specs: PostgreSQL, Redis, statsd.

Each runs in a model of its image on this machine's binaries of the same program (``services.py``; the versions
differ from the chart's tags, and each test says both). A service whose binary this machine lacks is not run
(``Installed.not_run``): its test skips with the reason.
"""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path

import httpx
import psycopg2
import pytest
import redis

from tests.chart_runtime.install import RELEASE, Installed

pytestmark = pytest.mark.integration
STATSD = f"Deployment/{RELEASE}-statsd"


def _ready(installed: Installed, workload: str) -> str:
    """The pod's rendered readiness probe, run now: it must pass; returns what it said."""
    pod = installed.kubelet.pod_of(workload)
    assert pod.phase == "Running", pod.describe()
    run = pod.containers[0]
    ok, detail = installed.kubelet.probe(pod, run.name, "readinessProbe")
    assert ok, f"{workload}: {detail}\n{pod.describe()}"
    return detail


def test_the_bundled_postgresql_is_the_metadata_database(installed: Installed, prove) -> None:
    workload = f"StatefulSet/{RELEASE}-postgresql"
    probe = _ready(installed, workload)
    url = installed.db_url.replace("+psycopg2", "")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database(), current_setting('server_version')")
        user, database, version = cur.fetchone()
        cur.execute("SELECT count(*) FROM alembic_version")  # Airflow's migrations ran here
        migrated = cur.fetchone()[0]
        cur.execute("SHOW data_directory")
        data = Path(cur.fetchone()[0]).resolve()
    conn.close()
    assert (user, database, migrated) == ("airflow", "airflow", 1)
    # PGDATA is on the volume of the StatefulSet's claim template `data` (ordinal 0), not in the pod's own root.
    claim = f"data-{RELEASE}-postgresql-0"
    assert data.parent.name == claim and data.parent.parent.name == "persistent-volumes", data
    # The Secret's password is the one the entrypoint initialised the database with, and it is required.
    wrong = url.replace("airflow:", "airflow:not-", 1)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong).close()
    image = installed.rendered("StatefulSet", f"{RELEASE}-postgresql")["spec"]["template"]["spec"]["containers"][0]
    prove(
        f"pg_isready: {probe.split(' - ')[-1]}; {user}@{database} migrated, PGDATA on claim {claim}, a wrong password "
        f"refused; {image['image']} modelled on PostgreSQL {version}"
    )


def test_the_bundled_redis_is_the_celery_broker(installed: Installed, prove) -> None:
    workload = f"Deployment/{RELEASE}-redis"
    probe = _ready(installed, workload)
    client = redis.Redis.from_url(installed.broker_url)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        data = Path(client.config_get("dir")["dir"]).resolve()
        bindings = sorted(k.decode() for k in client.keys("_kombu.binding.*"))
        version = client.info("server")["redis_version"]
    finally:
        client.close()
    pod = installed.kubelet.pod_of(workload)
    assert data == (pod.root / "volumes" / "data").resolve(), f"--dir is {data}, not the pod's `data` emptyDir"
    # Every pool's workers declared their queues on this broker (kombu's bindings, one key per queue).
    queues = {q for t in installed.platform.pools for q in t.queues}
    assert {f"_kombu.binding.{q}" for q in queues} <= set(bindings), bindings
    image = installed.rendered("Deployment", f"{RELEASE}-redis")["spec"]["template"]["spec"]["containers"][0]
    prove(
        f"redis-cli ping: {probe.removeprefix('exit 0: ')}; append-only on the pod's emptyDir; queues "
        f"{', '.join(sorted(queues))} bound; {image['image']} modelled on Redis {version}"
    )


def test_the_statsd_exporter_receives_airflow_metrics(installed: Installed, prove) -> None:
    if STATSD in installed.not_run:
        pytest.skip(f"{STATSD} is not run on this machine: {installed.not_run[STATSD]}")
    probe = _ready(installed, STATSD)
    target = installed.kubelet.network.service_target(f"{RELEASE}-statsd", 9102)
    assert target, "no pod behind the statsd Service's metrics port"
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline and "airflow_scheduler_heartbeat" not in text:
        text = httpx.get(f"http://{target}/metrics", timeout=10).text
        time.sleep(2)
    assert "airflow_scheduler_heartbeat" in text, text[-2000:]
    names = sorted({line.split("{")[0].split()[0] for line in text.splitlines() if line.startswith("airflow_")})
    prove(f"readiness {probe}; /metrics through the Service has {len(names)} airflow_* series, scheduler heartbeat")


def test_airflow_metrics_reach_the_statsd_service(installed: Installed, prove) -> None:
    """Where the exporter cannot run here, what the chart configures is still checked: the components' statsd host
    and port (AIRFLOW__METRICS__STATSD_*) reach the statsd Service's UDP port, where this test captures them."""
    if STATSD not in installed.not_run:
        pytest.skip("the exporter runs here: test_the_statsd_exporter_receives_airflow_metrics reads them from it")
    network = installed.kubelet.network
    assert f"{RELEASE}-statsd" in network.proxies, "no component addressed the statsd Service by its name"
    ip, proxies = network.proxies[f"{RELEASE}-statsd"]
    port = installed.rendered("Service", f"{RELEASE}-statsd")["spec"]["ports"][0]
    assert (port["name"], port["protocol"]) == ("statsd", "UDP")
    proxy = next(p for p in proxies if p.port == port["port"])
    packets: queue.Queue[bytes] = queue.Queue()
    proxy.taps.append(packets.put)
    seen: set[str] = set()
    wanted = {"airflow.scheduler_heartbeat", "airflow.triggerer_heartbeat"}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not wanted <= seen:
            with contextlib.suppress(queue.Empty):
                packet = packets.get(timeout=1.0)
                seen |= {line.split(":")[0] for line in packet.decode(errors="replace").splitlines() if ":" in line}
    finally:
        proxy.taps.remove(packets.put)
    assert wanted <= seen, f"statsd names seen at {ip}:{port['port']} in 60 s: {sorted(seen)[:40]}"
    prove(
        f"{len(seen)} statsd names at the Service's {ip}:{port['port']}/UDP, scheduler and triggerer heartbeats "
        f"among them; the exporter itself not run ({installed.not_run[STATSD].split(': ', 1)[-1][:50]}...)"
    )
