"""`sluice status` fails on faults, not on the autoscaler doing its job (adding or retiring workers)."""

from __future__ import annotations

import pytest
from sluice.stack.config import StackConfig
from sluice.stack.status import ComponentHealth, ComponentStatus, Health, Status


def _health(text: str) -> ComponentHealth:
    state, _, detail = text.partition(": ")
    return ComponentHealth(Health(state), detail)


def _status(*health: tuple[str, str]) -> Status:
    comps = [
        ComponentStatus(f"{kind}-{i}", kind, 100 + i, not h.startswith(("dead", "stopped")), _health(h), "log")
        for i, (kind, h) in enumerate(health)
    ]
    return Status(StackConfig(), comps, [])


CORE_OK = (("scheduler", "healthy"), ("api-server", "healthy"))


@pytest.mark.parametrize(
    "worker_health",
    ["healthy", "starting: no ping reply yet", "draining: warm shutdown", "stopped: drained"],
)
def test_workers_being_scaled_keep_the_stack_healthy(worker_health: str) -> None:
    assert _status(*CORE_OK, ("worker", worker_health)).healthy


@pytest.mark.parametrize(
    "component",
    [("worker", "dead"), ("scheduler", "starting: no heartbeat yet"), ("scheduler", "dead"), ("redis", "dead")],
)
def test_a_dead_component_or_a_core_one_not_ready_is_unhealthy(component: tuple[str, str]) -> None:
    assert not _status(*CORE_OK, component).healthy


@pytest.mark.parametrize(
    "component", [("scheduler", "starting"), ("worker", "waiting: on the broker, which does not answer")]
)
def test_a_component_not_judged_yet_is_not_healthy(component: tuple[str, str]) -> None:
    assert not _status(*CORE_OK, component).healthy


def test_health_reads_as_sluice_status_prints_it() -> None:
    assert str(ComponentHealth(Health.HEALTHY)) == "healthy"
    assert str(ComponentHealth(Health.STARTING, "no ping reply yet")) == "starting: no ping reply yet"
    assert str(ComponentHealth(Health.STOPPED, "drained")) == "stopped: drained"


def test_a_stopped_stack_is_not_healthy() -> None:
    """`sluice status` exits 1 after `sluice down`: nothing runs."""
    stopped = _status(("scheduler", "dead"), ("api-server", "dead"))
    assert stopped.stopped and not stopped.healthy
    assert Status(StackConfig(), [], []).stopped


def test_restarts_back_off_as_kubernetes_does() -> None:
    from sluice.stack.supervisor import backoff

    assert [backoff(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 300]
    assert [backoff(n, first=0) for n in range(3)] == [0, 0, 0], "a stack may restart at once (the fault bench)"
    assert [backoff(n, first=1) for n in range(4)] == [0, 1, 2, 4]
