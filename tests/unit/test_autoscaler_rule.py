"""The local autoscaler's rule: KEDA's numbers, HPA-style pacing, and idle workers only on scale-in."""

from __future__ import annotations

from sluice.platform import Pool
from sluice.stack.autoscaler import PoolMemory, decide

POOL = Pool.model_validate(
    {
        "name": "default",
        "queues": ["default"],
        "concurrency": 4,
        "autoscaling": {
            "minReplicas": 0,
            "maxReplicas": 3,
            "cooldownPeriod": 30,
            "scaleDown": {"stabilizationWindowSeconds": 10, "podsPerPeriod": 1, "periodSeconds": 5},
        },
    }
)


def test_scale_up_is_immediate_and_clamped_to_max() -> None:
    decision = decide(POOL, 5.0, ["default-1"], set(), now=0, memory=PoolMemory())
    assert (decision.desired, decision.start, decision.stop) == (3, 2, [])


def test_scale_in_waits_for_the_stabilization_window() -> None:
    memory = PoolMemory()
    workers = ["default-1", "default-2"]
    assert decide(POOL, 1.0, workers, set(), now=0, memory=memory).stop == []
    assert decide(POOL, 1.0, workers, set(), now=9, memory=memory).stop == []
    assert decide(POOL, 1.0, workers, set(), now=10, memory=memory).stop == ["default-2"]


def test_scale_to_zero_waits_for_the_cooldown_period() -> None:
    memory = PoolMemory()
    assert decide(POOL, 0.0, ["default-1"], set(), now=0, memory=memory).stop == []
    assert decide(POOL, 0.0, ["default-1"], set(), now=29, memory=memory).stop == []
    assert decide(POOL, 0.0, ["default-1"], set(), now=30, memory=memory).stop == ["default-1"]


def test_scale_in_never_picks_a_busy_worker() -> None:
    memory = PoolMemory(low_since=0)
    decision = decide(POOL, 1.0, ["default-1", "default-2"], {"default-2"}, now=100, memory=memory)
    assert decision.stop == ["default-1"]


def test_scale_in_waits_while_every_worker_is_busy() -> None:
    memory = PoolMemory(low_since=0)
    decision = decide(POOL, 1.0, ["default-1", "default-2"], {"default-1", "default-2"}, now=100, memory=memory)
    assert decision.stop == []
    assert "every worker is running a task" in decision.reason


def test_scale_in_waits_when_a_worker_did_not_answer_the_inspection() -> None:
    decision = decide(POOL, 0.0, ["default-1"], None, now=100, memory=PoolMemory(low_since=0))
    assert decision.stop == []


def test_scale_in_removes_at_most_pods_per_period() -> None:
    memory = PoolMemory(low_since=0)
    workers = ["default-1", "default-2", "default-3"]
    assert decide(POOL, 1.0, workers, set(), now=100, memory=memory).stop == ["default-3"]
    assert decide(POOL, 1.0, workers[:2], set(), now=102, memory=memory).stop == []  # paced
    assert decide(POOL, 1.0, workers[:2], set(), now=105, memory=memory).stop == ["default-2"]


def test_load_returning_resets_the_window() -> None:
    memory = PoolMemory()
    decide(POOL, 1.0, ["default-1", "default-2"], set(), now=0, memory=memory)
    decide(POOL, 8.0, ["default-1", "default-2"], set(), now=5, memory=memory)
    assert decide(POOL, 1.0, ["default-1", "default-2"], set(), now=12, memory=memory).stop == []
