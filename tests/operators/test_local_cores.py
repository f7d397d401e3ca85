"""Which cores the local launcher pins a step to: steps side by side in two worker slots must not share one."""

from __future__ import annotations

import os

import pytest
from sluice.launchers.base import StepRun
from sluice.launchers.local import cores_for
from sluice.platform import Profile

CORES = sorted(os.sched_getaffinity(0))


def step(task_id: str, map_index: int = -1) -> StepRun:
    return StepRun(
        dag_id="d",
        task_id=task_id,
        run_id="r",
        try_number=1,
        map_index=map_index,
        image="ml-steps",
        command=["true"],
        env={},
        profile_name="default",
        profile=Profile(cpu="1", memory="1Gi"),
        artifact_prefix="/tmp/x",
    )


@pytest.mark.skipif(len(CORES) < 2, reason="this machine has one core: nothing to spread over")
def test_neighbouring_shards_of_a_mapped_step_get_different_cores() -> None:
    assert cores_for(step("ingest", 0), 1) != cores_for(step("ingest", 1), 1)


def test_a_step_gets_as_many_cores_as_its_profile_and_only_this_machines() -> None:
    for map_index in range(-1, 5):
        chosen = cores_for(step("train", map_index), min(2, len(CORES)))
        assert len(set(chosen)) == min(2, len(CORES))
        assert set(chosen) <= set(CORES)
