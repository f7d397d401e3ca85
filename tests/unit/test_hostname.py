"""What a task instance records as its host: the pod IP on a cluster, the worker's name on the local stack."""

from __future__ import annotations

import socket

import pytest
from sluice.hostname import pod_ip, worker_hostname


def test_a_pod_reports_its_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_IP", "10.1.2.3")
    assert pod_ip() == "10.1.2.3"


def test_without_a_pod_ip_the_fqdn_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_IP", raising=False)
    assert pod_ip() == socket.getfqdn()


def test_a_local_worker_reports_its_stack_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WORKER_NAME", "highmem-2")
    assert worker_hostname() == "highmem-2"
