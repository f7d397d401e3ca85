"""When an embedded run goes side by side, what it warms before its tasks fork, and the dag.test() wait it shortens
(sluice.embedded_run, compat)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sluice import compat, embedded_run

REPO = Path(__file__).resolve().parents[2]


def test_parallelism_defaults_to_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv(embedded_run.ENV, raising=False)
    assert embedded_run.parallelism() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("raw", ["0", "-2", "two"])
def test_a_bad_parallelism_names_the_variable_and_the_fix(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(embedded_run.ENV, raw)
    with pytest.raises(ValueError, match=f"{embedded_run.ENV}=.*whole number of tasks at once"):
        embedded_run.parallelism()


def test_one_task_at_a_time_keeps_the_serial_dag_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dag.py").write_text("")
    monkeypatch.setenv(embedded_run.ENV, "1")
    assert not embedded_run.side_by_side(SimpleNamespace(fileloc=str(tmp_path / "dag.py")))
    monkeypatch.setenv(embedded_run.ENV, "2")
    assert embedded_run.side_by_side(SimpleNamespace(fileloc=str(tmp_path / "dag.py")))


def test_a_dag_built_in_memory_runs_serially(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The executor's task processes parse the DAG's file: a DAG with none cannot go through them."""
    monkeypatch.setenv(embedded_run.ENV, "2")
    assert not embedded_run.side_by_side(SimpleNamespace(fileloc=str(tmp_path / "not-there.py")))


def test_the_dag_test_wait_checks_out_on_the_pinned_airflow() -> None:
    assert compat.problem(compat.Feature.DAG_TEST_POLL) is None


def test_only_the_runner_threads_one_second_sleeps_are_replaced() -> None:
    waited: list[float] = []
    other: list[float] = []
    with compat.dag_test_waits(waited.append) as took:
        assert took
        time.sleep(1)  # the runner thread's dag.test wait: replaced
        time.sleep(0.001)  # any other sleep: real
        thread = threading.Thread(target=lambda: (time.sleep(1), other.append(1.0)))
        thread.start()
        thread.join()
    assert waited == [1]
    assert other == [1.0]  # another thread's sleep(1) really slept
    assert time.sleep.__module__ == "time"  # restored


def test_before_its_tasks_fork_an_embedded_run_warms_every_step_command_of_its_dag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner is started and each step command's code identity cached in the process the executor forks its
    task processes from, mapped steps (``.partial(command=...)``) included."""
    from sluice.launchers import local, warm
    from sluice.runs import load_dag

    warmed: list[list[str]] = []
    started: list[Path] = []
    monkeypatch.setattr(local, "warm_code_identity", lambda commands: warmed.extend(commands))
    monkeypatch.setattr(warm, "prestart", lambda home, path: bool(started.append(home)))
    embedded_run._warm_local_steps(load_dag("sharded_training", REPO / "dags"))
    steps = ["featurize_shard", "ingest_shard", "merge_stats", "pick_champion", "score_shard", "train_sample"]
    assert sorted(warmed) == [["sluice-step", step] for step in [*steps, "train_sgd"]]
    assert len(started) == 1


def test_no_local_step_is_warmed_for_another_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    import sluice.platform
    from sluice.launchers import warm

    on_a_cluster = SimpleNamespace(launcher=SimpleNamespace(type="kubernetes"))
    monkeypatch.setattr(sluice.platform, "current_platform", lambda: on_a_cluster)
    monkeypatch.setattr(warm, "prestart", lambda home, path: pytest.fail("a runner was started"))
    embedded_run._warm_local_steps(SimpleNamespace(tasks=[]))


def _never_takes_its_stop_message() -> None:
    """A task slot stuck for good (what hung one demo after its run had ended)."""
    time.sleep(3600)


def test_a_task_slot_that_never_stops_is_terminated_at_the_runs_end() -> None:
    import multiprocessing

    import psutil
    from airflow.executors.local_executor import LocalExecutor

    executor = LocalExecutor(parallelism=1)
    executor.start()  # with fork, its one slot starts here: a real worker that stops on its message
    stuck = multiprocessing.get_context("fork").Process(target=_never_takes_its_stop_message, daemon=True)
    stuck.start()
    pid = stuck.pid
    executor.workers[pid] = stuck
    original = LocalExecutor.end
    started = time.monotonic()
    with compat.bounded_local_executor_end(1.0, embedded_run.stop_slots) as took:
        assert took, "the executor's stop checks out on the pinned Airflow"
        done = threading.Thread(target=executor.end, daemon=True)
        done.start()
        done.join(timeout=60)
    assert not done.is_alive(), "end() still waits on the stuck slot"
    assert not psutil.pid_exists(pid), "terminated and reaped, not waited for"
    assert time.monotonic() - started < 60
    assert LocalExecutor.end is original, "Airflow's end() is back after the block"
