"""What a task instance records as its host: the pod IP on a cluster, the worker's name on the local stack, and
elsewhere the name Airflow would record without Sluice, one under which a peer reaches this machine.

Each test asks Airflow itself, through ``[core] hostname_callable``: ``airflow.sdk.api.client.get_hostname`` is what
a task's supervisor sends the api-server when the task starts running (and on each heartbeat)."""

from __future__ import annotations

import socket
import threading

import pytest
from airflow.sdk.api.client import get_hostname

CALLABLE = "AIRFLOW__CORE__HOSTNAME_CALLABLE"


@pytest.fixture(autouse=True)
def _no_sluice_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_IP", raising=False)
    monkeypatch.delenv("SLUICE_WORKER_NAME", raising=False)


def recorded(monkeypatch: pytest.MonkeyPatch, callable_path: str | None) -> str:
    """The hostname Airflow records with this ``hostname_callable`` (None: Airflow's default)."""
    if callable_path is None:
        monkeypatch.delenv(CALLABLE, raising=False)
    else:
        monkeypatch.setenv(CALLABLE, callable_path)
    name: str = get_hostname()
    return name


def test_a_pod_records_its_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    assert recorded(monkeypatch, "sluice.hostname.pod_ip") == "10.1.2.3"


def test_a_local_worker_records_its_stack_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WORKER_NAME", "highmem-2")
    assert recorded(monkeypatch, "sluice.hostname.worker_hostname") == "highmem-2"


@pytest.mark.parametrize("callable_path", ["sluice.hostname.pod_ip", "sluice.hostname.worker_hostname"])
def test_without_a_pod_ip_or_worker_name_the_host_is_recorded_as_airflow_records_it(
    monkeypatch: pytest.MonkeyPatch, callable_path: str
) -> None:
    """Not ``socket.getfqdn()``, which names a host whose ``/etc/hosts`` lists ``localhost`` first for its address
    ``localhost``: a name under which every peer (the api-server fetching a live log) reaches itself."""
    airflows = recorded(monkeypatch, None)
    assert recorded(monkeypatch, callable_path) == airflows


def test_a_peer_reaches_this_host_under_the_recorded_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The api-server fetches a running task's log from ``http://<hostname>:<log port>``: a server listening on
    every interface here answers a connection made to the recorded name."""
    name = recorded(monkeypatch, "sluice.hostname.pod_ip")
    dual = socket.has_dualstack_ipv6()
    with socket.create_server(
        ("", 0), family=socket.AF_INET6 if dual else socket.AF_INET, dualstack_ipv6=dual
    ) as server:
        port = server.getsockname()[1]
        server.settimeout(10)
        accepted: list[bytes] = []

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                accepted.append(conn.recv(16))
                conn.sendall(b"log")

        serving = threading.Thread(target=answer, daemon=True)
        serving.start()
        with socket.create_connection((name, port), timeout=10) as peer:
            peer.sendall(b"GET")
            assert peer.recv(16) == b"log"
        serving.join(10)
    assert accepted == [b"GET"], f"{name!r} resolved, but not to this host"
