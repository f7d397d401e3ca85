"""A run's hand-off per mapped step (``sluice.runs``): what the demo prints to size shards by."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console
from sluice import cli
from sluice.runs import HANDOFF_SHARE, RunOutcome, TaskOutcome

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def step_task(
    map_index: int, task_s: float, step_s: float, *, pre_s: float = 0.1, key_s: float = 0.0, hit: bool = False
) -> TaskOutcome:
    """A mapped step instance whose task ran ``task_s`` seconds, its step ``step_s`` of them after ``pre_s``."""
    started = T0 + timedelta(seconds=pre_s)
    cache = {"hit": True, "key": "k"} if hit else {"hit": False, "key": "k", "key_seconds": key_s, "store_seconds": 0}
    result = {
        "started_at": started.isoformat(),
        "finished_at": (started + timedelta(seconds=step_s)).isoformat(),
        "cache": cache,
    }
    return TaskOutcome("ingest", map_index, "success", 1, result, T0, T0 + timedelta(seconds=task_s))


def test_hand_off_is_the_tasks_time_outside_its_step_and_the_caches_hashing() -> None:
    task = step_task(0, task_s=4.0, step_s=2.5, key_s=1.2)
    assert task.step_seconds == pytest.approx(2.5)
    assert task.handoff_seconds == pytest.approx(0.3), "4.0 s task - 2.5 s step - 1.2 s first hash of the shard"


def test_a_cache_hit_or_a_task_without_step_times_has_no_hand_off() -> None:
    assert step_task(0, task_s=0.4, step_s=2.5, hit=True).handoff_seconds is None, "the times are another run's"
    assert TaskOutcome("list_shards", 0, "success", 1, ["a"], T0, T0).handoff_seconds is None  # type: ignore[arg-type]
    assert TaskOutcome("ingest", 0, "running", 1, None, T0, None).handoff_seconds is None


def test_handoffs_take_medians_per_mapped_step_and_say_how_much_bigger_instances_should_be() -> None:
    run = RunOutcome("d", "r", "success", [step_task(i, task_s=1.0 + 0.1 * i, step_s=0.5) for i in range(3)])
    run.tasks.append(TaskOutcome("train", -1, "success", 1, run.tasks[0].result, T0, T0 + timedelta(seconds=9)))
    (handoff,) = run.handoffs()  # the unmapped step is not a shard step
    assert (handoff.task_id, handoff.instances) == ("ingest", 3)
    assert handoff.handoff_seconds == pytest.approx(0.6) and handoff.step_seconds == pytest.approx(0.5)
    assert handoff.too_small and handoff.growth == pytest.approx(1.2 / HANDOFF_SHARE)


def summary(run: RunOutcome, monkeypatch: pytest.MonkeyPatch) -> str:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200))
    cli._print_handoffs(run)
    return out.getvalue()


def test_the_summary_flags_a_step_whose_hand_off_is_over_a_tenth_of_its_work(monkeypatch: pytest.MonkeyPatch) -> None:
    small = RunOutcome("d", "r", "success", [step_task(i, task_s=1.4, step_s=1.0, pre_s=0.2) for i in range(2)])
    text = summary(small, monkeypatch)
    assert "  ingest: 0.40 s, 40% of its 1.00 s step (2 instances): over 10%; ~4.0× the work per instance" in text


def test_the_summary_does_not_flag_a_step_big_enough_for_its_hand_off(monkeypatch: pytest.MonkeyPatch) -> None:
    big = RunOutcome("d", "r", "success", [step_task(0, task_s=3.15, step_s=3.0)])
    text = summary(big, monkeypatch)
    assert "  ingest: 0.15 s, 5% of its 3.00 s step (1 instance)\n" in text and "over" not in text


def test_a_run_without_mapped_steps_prints_no_hand_off_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    assert summary(RunOutcome("d", "r", "success", []), monkeypatch) == ""
