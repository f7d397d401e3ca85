"""Scale-in never kills a running task: warm shutdown and the pod-deletion-cost keeper.

Real Celery workers (prefork, as in the chart) on a throwaway Redis. The Kubernetes API cannot run here:
a stub HTTP server stands in for it (named as such) and records the PATCH requests the keeper sends;
the kind suite checks the same against a real API server.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from sluice.worker.deletion_cost import ANNOTATION, DeletionCostKeeper

from tests.worker.harness import BOUND, send, start_worker, stop, wait_for


class StubKubernetesApi(ThreadingHTTPServer):
    """Stand-in for the Kubernetes API server: answers pod PATCHes and records the annotation values."""

    def __init__(self) -> None:
        self.costs: list[str] = []
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.paths.append(self.path)
                api.costs.append(body["metadata"]["annotations"][ANNOTATION])
                payload = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[tuple[StubKubernetesApi, Path]]:
    server = StubKubernetesApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "stub", "user": {"token": "stub"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
                "current-context": "stub",
            }
        )
    )
    yield server, kubeconfig
    server.shutdown()


@pytest.mark.slow  # a real Celery worker on a throwaway Redis
def test_sigterm_lets_the_running_task_finish_and_takes_no_new_one(redis_url: str, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = start_worker(redis_url, tmp_path, concurrency=1)
    try:
        send(redis_url, "long", 4, markers)
        wait_for(lambda: (markers / "long.started").exists(), "the long task to start")
        worker.send_signal(signal.SIGTERM)
        send(redis_url, "late", 0.1, markers)
        assert worker.wait(timeout=BOUND) == 0
        assert (markers / "long.done").exists()
        assert not (markers / "late.started").exists()
        assert redis.Redis.from_url(redis_url).llen("default") == 1, "the late task must still wait on the queue"
    finally:
        stop(worker)


@pytest.mark.slow  # a real Celery worker on a throwaway Redis
def test_keeper_tracks_running_tasks_and_returns_to_zero(redis_url: str, tmp_path: Path, kube_api) -> None:
    api, kubeconfig = kube_api
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = start_worker(redis_url, tmp_path, concurrency=2, kubeconfig=kubeconfig)
    try:
        wait_for(lambda: api.costs[:1] == ["0"], "the keeper's first patch (idle worker)")
        for i in range(2):
            send(redis_url, f"t{i}", 2, markers)
        wait_for(lambda: "2" in api.costs, "the cost to reach 2 while both tasks run")
        wait_for(lambda: all((markers / f"t{i}.done").exists() for i in range(2)), "both tasks to finish")
        wait_for(lambda: api.costs[-1] == "0", "the cost to return to 0 when idle")
    finally:
        stop(worker)
    assert set(api.paths) == {"/api/v1/namespaces/ml/pods/worker-0"}


def test_keeper_patches_only_when_the_count_changes() -> None:
    counts = iter([0, 0, 1, 1, 0])
    sent: list[str] = []
    keeper = DeletionCostKeeper(
        "p",
        "ns",
        lambda n, ns, body: sent.append(body["metadata"]["annotations"][ANNOTATION]),
        count=lambda: next(counts),
    )
    for _ in range(5):
        keeper.sync()
    assert sent == ["0", "1", "0"]


def test_a_failed_patch_is_logged_and_retried_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []

    def flaky(name: str, namespace: str, body: dict) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("api unreachable")

    keeper = DeletionCostKeeper("p", "ns", flaky, count=lambda: 3)
    assert keeper.sync() is None
    assert "could not set" in caplog.text
    assert keeper.sync() == 3
    assert len(attempts) == 2
