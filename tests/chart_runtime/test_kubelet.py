"""The harness's kubelet keeps pods as a cluster does (``kubelet.py``), shown on tiny hand-written workloads.

Each container is a few lines of Python run by this virtualenv's interpreter (the ``harness/python`` image model);
probe periods, thresholds and the back-off are shortened (fractions of a second) so each behaviour shows in a
second or two: replicas with their own IPs and ports behind a Service; restarts per restartPolicy with the
crash-loop back-off; a Job's backoffLimit; liveness, readiness and startup probes; a probe's timeout.
"""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chart_runtime.install import pod_status
from tests.chart_runtime.kubelet import Image, Kubelet, Objects, Pod, pod_ready

IMAGE = "harness/python"
NAMESPACE = "t"
Doc = dict[str, Any]

# An HTTP server on the port given as its argument (the kubelet maps the declared containerPort to the pod's host
# port): GET / answers the pod's name; GET /ready answers 503 while a file `unready` exists in its working directory.
SERVE = textwrap.dedent(
    """
    import http.server, os, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            unready = self.path == "/ready" and os.path.exists("unready")
            body = os.environ["POD_NAME"].encode()
            self.send_response(503 if unready else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def container(name: str, code: str, *args: str, **extra: Any) -> Doc:
    return {"name": name, "image": f"{IMAGE}:1", "command": ["python", "-c", textwrap.dedent(code), *args], **extra}


READY = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 0.1}


def server(**extra: Any) -> Doc:
    """A container of SERVE, ready (by default) once it answers GET /ready."""
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    ports = [{"name": "http", "containerPort": 8000}]
    return container("web", SERVE, "8000", env=env, ports=ports, **{"readinessProbe": READY, **extra})


def workload(kind: str, name: str, *containers: Doc, **spec: Any) -> Doc:
    pod_spec = {key: spec.pop(key) for key in ("restartPolicy", "volumes") if key in spec}
    template: Doc = {"metadata": {"labels": {"app": name}}, "spec": {"containers": list(containers), **pod_spec}}
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "spec": {**spec, "template": template}}


def service(name: str, app: str) -> Doc:
    ports = [{"name": "http", "port": 80, "targetPort": "http"}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": ports},
    }


SCRATCH = [{"name": "scratch", "emptyDir": {}}]  # outlives a container's restarts, as an emptyDir does
COUNT = """
    import pathlib
    count = pathlib.Path("/scratch/runs")
    runs = int(count.read_text()) + 1 if count.exists() else 1
    count.write_text(str(runs))
"""  # `runs`: which run of the container this is


def counted(code: str) -> Doc:
    return container(
        "main",
        textwrap.dedent(COUNT) + textwrap.dedent(code),
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Kubelet]:
    host = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    images = {IMAGE: Image({"HOME": "/home/t", "PYTHONUNBUFFERED": "1"}, lambda args: args, host_env=host)}
    kubelet = Kubelet(Objects([]), images, NAMESPACE, tmp_path)
    kubelet.backoff = (0.4, 1.6)  # the kubelet's 10 s .. 300 s, shortened
    kubelet.probe_timeout_scale = 1.0  # the manifests' own timeouts
    kubelet.job_backoff = (0.2, 1.0)
    yield kubelet
    kubelet.stop_all(grace=2)


def apply(kubelet: Kubelet, *docs: Doc) -> list[Pod]:
    kubelet.objects.docs.extend(docs)
    return kubelet.apply([d for d in docs if d["kind"] != "Service"])


def until(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)


def starts(pod: Pod) -> list[float]:
    """When each run of the pod's container started (each run prints time.monotonic(), system-wide, first)."""
    log = pod.containers[0].log
    return [float(line) for line in log.read_text().split()] if log.exists() else []


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def get(address: str, path: str = "/") -> str:
    return httpx.get(f"http://{address}{path}", timeout=5).text


# ---- replicas ----------------------------------------------------------------------------------------------
def test_replicas_run_as_many_pods_each_with_its_own_ip_and_port(
    kubelet: Kubelet, prove: Callable[[str], None]
) -> None:
    pods = apply(
        kubelet,
        workload("Deployment", "three", server(), replicas=3),
        workload("Deployment", "none", server(), replicas=0),
        workload("Deployment", "unset", server()),
        service("three", "three"),
    )
    assert [p.workload for p in pods] == ["Deployment/three"] * 3 + ["Deployment/unset"]
    three = kubelet.pods_of("Deployment/three")
    until(lambda: all(map(pod_ready, three)), "three pods ready")
    assert len({p.ip for p in three}) == 3 and len({p.name for p in three}) == 3
    ports = {p.containers[0].ports[8000] for p in three}
    assert len(ports) == 3
    assert sorted(get(f"127.0.0.1:{port}") for port in ports) == sorted(p.name for p in three)
    # The Service's one address reaches each pod behind it in turn.
    address = kubelet.network.service_target("three", 80)
    assert address is not None
    assert {get(address) for _ in range(6)} == {p.name for p in three}
    assert kubelet.pods_of("Deployment/none") == []
    prove("replicas 3: 3 pods, 3 IPs, 3 host ports, the Service reaches each; replicas 0: none; unset: 1")


def test_a_statefulset_starts_its_ordinals_in_order(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    apply(kubelet, workload("StatefulSet", "db", server(), replicas=2))
    first = kubelet.pod_of("StatefulSet/db")
    assert first.name == "db-0"
    (first.containers[0].cwd / "unready").touch()
    time.sleep(1.0)
    assert [p.name for p in kubelet.pods_of("StatefulSet/db")] == ["db-0"]  # db-1 waits for db-0 to be ready
    (first.containers[0].cwd / "unready").unlink()
    until(lambda: len(kubelet.pods_of("StatefulSet/db")) == 2, "db-1 started once db-0 is ready")
    assert kubelet.pods_of("StatefulSet/db")[1].name == "db-1"
    prove("db-0 unready: db-1 not started; db-0 ready: db-1 started")


# ---- restarts ----------------------------------------------------------------------------------------------
CRASH = "import sys, time; print(time.monotonic(), flush=True); sys.exit(3)"


def test_a_crashing_container_restarts_with_the_kubelets_back_off(
    kubelet: Kubelet, prove: Callable[[str], None]
) -> None:
    (pod,) = apply(kubelet, workload("Deployment", "crash", container("main", CRASH)))
    run = pod.containers[0]
    seen: set[str] = set()

    def five() -> bool:
        seen.update(s["state"].get("waiting", {}).get("reason", "") for s in pod_status(pod)["containerStatuses"])
        return len(starts(pod)) >= 5

    until(five, "five runs")
    gaps = [b - a for a, b in zip(starts(pod), starts(pod)[1:], strict=False)][:4]
    # The first restart at once, then the back-off: 0.4, 0.8, 1.6 s, capped at 1.6 s (the kubelet's 10 s .. 300 s).
    for gap, delay in zip(gaps, [0.0, 0.4, 0.8, 1.6], strict=True):
        assert delay <= gap < delay + 1.0, gaps
    assert "CrashLoopBackOff" in seen
    status = pod_status(pod)["containerStatuses"][0]
    assert status["restartCount"] >= 4 and run.restarts >= 4
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert pod.phase == "Running"  # restartPolicy Always: the pod is never done
    prove(
        "restarts "
        + ", ".join(f"{g:.1f}" for g in gaps)
        + " s apart (back-off 0, 0.4, 0.8, 1.6 cap); CrashLoopBackOff, lastState exit 3"
    )


def test_the_back_off_starts_over_after_a_long_run(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    """Judged by the kubelet's own events, not by the gaps between runs (a loaded machine stretches those)."""
    kubelet.backoff = (0.5, 2.0)  # starts over when a run lasted more than 2 x 2 s since its restart
    code = """
        import sys, time
        print(time.monotonic(), flush=True)
        time.sleep(5 if runs == 3 else 60 if runs >= 4 else 0)
        sys.exit(1)
    """
    (pod,) = apply(kubelet, workload("Deployment", "long", counted(code), volumes=SCRATCH))
    until(lambda: len(starts(pod)) >= 4, "four runs")
    gaps = [b - a for a, b in zip(starts(pod), starts(pod)[1:], strict=False)]
    backoffs = [e.split(" ", 1)[1] for e in pod.containers[0].events if "Back-off" in e]
    # Run 1 ended: restarted at once; run 2 ended: backed off 0.5 s; run 3 lasted 5 s (> 2 x the cap): at once.
    assert backoffs == ["Back-off 0.5s restarting failed container (exit 1)"], pod.containers[0].events
    assert gaps[1] >= 0.5 and gaps[2] >= 5, gaps
    prove(f"back-offs {backoffs}: after a run longer than 2 x the cap, restarted without one")


def test_restart_policies_and_a_jobs_backoff_limit(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    fail_twice = "import sys; sys.exit(1 if runs <= 2 else 0)"
    always_fails = "import sys; sys.exit(1)"
    pods = apply(
        kubelet,
        workload("Job", "recovers", counted(fail_twice), restartPolicy="OnFailure", volumes=SCRATCH),
        workload("Job", "on-failure", container("main", always_fails), restartPolicy="OnFailure", backoffLimit=2),
        workload("Job", "never", container("main", always_fails), restartPolicy="Never", backoffLimit=1),
        workload("Deployment", "exits-zero", container("main", "print('done')")),
    )
    jobs = kubelet.workloads
    until(lambda: all(jobs[f"Job/{n}"].state for n in ("recovers", "on-failure", "never")), "the Jobs ended")
    # OnFailure: the same pod, its container restarted after each failure, until it succeeded.
    recovers = kubelet.pods_of("Job/recovers")
    assert jobs["Job/recovers"].state == "Complete" and len(recovers) == 1
    assert (recovers[0].phase, recovers[0].containers[0].restarts) == ("Succeeded", 2)
    # OnFailure past backoffLimit 2: the third failure fails the Job and the controller deletes the pod.
    assert jobs["Job/on-failure"].state == "Failed" and "BackoffLimitExceeded" in jobs["Job/on-failure"].reason
    (pod,) = jobs["Job/on-failure"].pods
    until(lambda: pod.finished.is_set(), "the Job's pod deleted")
    assert (pod.phase, pod.deleted, pod.containers[0].restarts) == ("Failed", True, 2)
    # Never: no container restart; each failed pod is replaced until backoffLimit 1 is passed (2 pods).
    never = jobs["Job/never"].pods
    assert jobs["Job/never"].state == "Failed" and len(never) == 2
    assert [(p.phase, p.containers[0].restarts) for p in never] == [("Failed", 0), ("Failed", 0)]
    # Always: even a container that exited 0 is restarted.
    (exits_zero,) = [p for p in pods if p.workload == "Deployment/exits-zero"]
    until(lambda: exits_zero.containers[0].restarts >= 1, "a restart after exit 0")
    assert exits_zero.containers[0].last is not None and exits_zero.containers[0].last["reason"] == "Completed"
    prove(
        "OnFailure: 2 restarts then Complete; past backoffLimit 2: Job Failed, pod deleted; "
        "Never: 2 pods, Failed; Always: exit 0 restarted"
    )


def test_a_deleted_pod_is_never_restarted(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    kubelet.backoff = (5.0, 10.0)
    (pod,) = apply(kubelet, workload("Deployment", "crash", container("main", CRASH)))
    until(lambda: pod.containers[0].waiting == "CrashLoopBackOff", "backing off after its second exit")
    began = time.monotonic()
    kubelet.stop(pod.name, grace=2)
    assert time.monotonic() - began < 2  # the back-off wait ends with the pod
    assert pod.phase == "Failed" and pod.finished.is_set()
    runs = len(starts(pod))
    time.sleep(0.5)
    assert len(starts(pod)) == runs == 2
    prove("deleted while backing off: stopped at once, no run after")


# ---- probes ------------------------------------------------------------------------------------------------
def exists(path: str) -> list[str]:
    return ["python", "-c", f"import os, sys; sys.exit(0 if os.path.exists({path!r}) else 1)"]


def test_a_failing_liveness_probe_kills_and_restarts_the_container(
    kubelet: Kubelet, prove: Callable[[str], None]
) -> None:
    code = """
        import pathlib, signal, sys, time
        def stop(*_):
            print("SIGTERM", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        if runs > 1:
            pathlib.Path("healthy").touch()  # its first run never is
        time.sleep(60)
    """
    live = {"exec": {"command": exists("healthy")}, "periodSeconds": 0.2, "failureThreshold": 3, "timeoutSeconds": 5}
    main = counted(code) | {"livenessProbe": live}
    (pod,) = apply(kubelet, workload("Deployment", "sick", main, volumes=SCRATCH))
    run = pod.containers[0]
    until(lambda: run.restarts == 1 and run.probes["livenessProbe"].tries >= 4, "a restart, then a passing probe")
    assert run.last is not None and run.last["exitCode"] == 143  # SIGTERM, handled
    assert "SIGTERM" in run.log.read_text()
    assert any("Liveness probe failed 3 times in a row: killed" in e for e in run.events), run.events
    time.sleep(0.5)
    assert run.restarts == 1 and run.probes["livenessProbe"].last.startswith("exit 0")
    prove("3 liveness failures: SIGTERM (exit 143), restarted once, then healthy")


def test_readiness_toggles_and_services_send_only_to_ready_pods(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    ready = READY | {"failureThreshold": 2, "successThreshold": 2}
    apply(kubelet, workload("Deployment", "web", server(readinessProbe=ready), replicas=2), service("web", "web"))
    first, second = kubelet.pods_of("Deployment/web")
    until(lambda: pod_ready(first) and pod_ready(second), "both ready")
    address = kubelet.network.service_target("web", 80)
    assert address is not None
    (first.containers[0].cwd / "unready").touch()
    until(lambda: not pod_ready(first), "the first pod unready")
    assert pod_status(first)["conditions"][-1] == {"type": "Ready", "status": "False"}
    assert first.containers[0].proc is not None and first.containers[0].restarts == 0  # unready is not dead
    assert {get(address) for _ in range(6)} == {second.name}
    (first.containers[0].cwd / "unready").unlink()
    until(lambda: pod_ready(first), "the first pod ready again")
    assert {get(address) for _ in range(6)} == {first.name, second.name}
    assert pod_status(first)["conditions"][-1] == {"type": "Ready", "status": "True"}
    prove("unready after 2 failures: the Service sends only to the other pod; ready after 2 successes: to both")


def test_a_service_without_ready_pods_refuses_connections(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    never = {"exec": {"command": ["false"]}, "periodSeconds": 0.1}
    apply(kubelet, workload("Deployment", "web", server(readinessProbe=never)), service("web", "web"))
    address = kubelet.network.service_target("web", 80)
    assert address is not None
    (pod,) = kubelet.pods_of("Deployment/web")
    until(lambda: pod.containers[0].probes.get("readinessProbe"), "a readiness try")
    until(lambda: _listening(pod.containers[0].ports[8000]), "the pod listening")
    host, port = address.split(":")
    with pytest.raises(ConnectionError), socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")  # the reset may come as soon as the connection is made
        assert conn.recv(100) == b""  # a reset (refused), never an answer
    assert get(f"127.0.0.1:{pod.containers[0].ports[8000]}") == pod.name  # the pod itself serves
    prove("no ready pod: the Service resets the connection; the pod itself answers")


def test_a_startup_probe_gates_the_others_and_kills_a_container_that_never_starts(
    kubelet: Kubelet, prove: Callable[[str], None]
) -> None:
    code = """
        import pathlib, time
        time.sleep(1.0)
        pathlib.Path("started").touch()
        time.sleep(60)
    """
    startup = {"exec": {"command": exists("started")}, "periodSeconds": 0.1, "failureThreshold": 50}
    live = {"exec": {"command": exists("started")}, "periodSeconds": 0.1, "failureThreshold": 1}
    slow = container("slow", code, startupProbe=startup, livenessProbe=live)
    never = container("never", "import time; time.sleep(60)")
    never["startupProbe"] = {"exec": {"command": exists("started")}, "periodSeconds": 0.1, "failureThreshold": 3}
    apply(kubelet, workload("Deployment", "slow", slow), workload("Deployment", "never", never))
    (pod,) = kubelet.pods_of("Deployment/slow")
    run = pod.containers[0]
    until(lambda: run.proc is not None, "started")
    time.sleep(0.5)
    status = pod_status(pod)["containerStatuses"][0]
    assert (status["started"], status["ready"], pod_ready(pod)) == (False, False, False)
    assert "livenessProbe" not in run.probes  # liveness waits for startup: it would have killed it by now
    until(lambda: pod_ready(pod), "ready once its startup probe passed")
    until(lambda: "livenessProbe" in run.probes and run.probes["livenessProbe"].tries >= 3, "three liveness tries")
    assert run.restarts == 0 and run.probes["livenessProbe"].failures == 0
    # A startup probe that never passes: failureThreshold x periodSeconds, then killed and restarted.
    (stuck,) = kubelet.pods_of("Deployment/never")
    until(lambda: stuck.containers[0].restarts >= 1, "the never-starting container restarted")
    assert any("Startup probe failed 3 times in a row: killed" in e for e in stuck.containers[0].events)
    assert not pod_ready(stuck)
    prove("liveness/readiness wait for startup; a startup probe never passing: killed after 3 failures, restarted")


def test_a_probe_fails_at_its_timeout(kubelet: Kubelet, prove: Callable[[str], None]) -> None:
    slow = {"exec": {"command": ["sleep", "30"]}, "timeoutSeconds": 0.5}
    (pod,) = apply(kubelet, workload("Deployment", "slow", container("main", "import time; time.sleep(60)")))
    pod.containers[0].spec["readinessProbe"] = slow
    began = time.monotonic()
    ok, detail = kubelet.probe(pod, "main", "readinessProbe")
    assert not ok and "timed out after 0.5 s" in detail
    assert time.monotonic() - began < 2.0
    prove(f"exec `sleep 30` with timeoutSeconds 0.5: failed in {time.monotonic() - began:.1f} s")
