"""The example pipelines with every step in a container of the step image (real podman, the image `make test`
built), against the same pipelines with steps as local processes: same tasks, same outcome, same metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from sluice.platform import current_platform
from sluice.runs import RunOutcome, run_dag
from sluice_steps import synth

from tests.pipelines.conftest import SMALL_GRID
from tests.support.containers import require_image

pytestmark = pytest.mark.slow
IGNORED = ("seconds", "bytes", "version", "registered")  # timings, pickle sizes (Python 3.11 here, 3.13 inside)


def comparable(outcome: RunOutcome) -> dict[str, dict[str, object]]:
    """Each task's model-quality metrics (what a launcher must not change)."""
    return {
        f"{task.task_id}[{task.map_index}]": {
            name: value for name, value in task.metrics.items() if not any(word in name for word in IGNORED)
        }
        for task in outcome.tasks
        if task.metrics
    }


def assert_same_metrics(local: RunOutcome, contained: RunOutcome) -> None:
    ours, theirs = comparable(local), comparable(contained)
    assert ours.keys() == theirs.keys()
    for task, metrics in ours.items():
        assert metrics.keys() == theirs[task].keys(), task
        for name, value in metrics.items():
            other = theirs[task][name]
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=1e-6, abs=1e-9), f"{task} {name}"
            else:
                assert other == value, f"{task} {name}"


def run_in(launcher: str, monkeypatch: pytest.MonkeyPatch, dag_id: str, dags_folder: Path, conf: dict) -> RunOutcome:
    with monkeypatch.context() as patch:
        patch.setenv("SLUICE_LAUNCHER", launcher)
        return run_dag(dag_id, dags_folder, conf)


def assert_steps_ran_in_containers(outcome: RunOutcome) -> None:
    """Every step that ran (not served from the cache) ran through the container launcher."""
    ran = [t for t in outcome.tasks if t.result and "outputs" in t.result and not t.cache_hit]
    assert ran and {t.result["launcher"] for t in ran if t.result} == {"container"}


@pytest.fixture(autouse=True)
def _engine(airflow_db: Path) -> None:
    require_image(current_platform().image_ref("ml-steps"))


def test_ml_training_pipeline_in_containers_matches_the_local_run(
    trained: RunOutcome, dags_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contained = run_in("container", monkeypatch, "ml_training_pipeline", dags_folder, {"grid": SMALL_GRID})
    assert sorted((t.task_id, t.map_index, t.state) for t in contained.tasks) == sorted(
        (t.task_id, t.map_index, t.state) for t in trained.tasks
    )
    assert contained.task("publish").state == "success"
    assert all(t.cache_state != "hit" for t in contained.tasks), "the image's code has its own cache key"
    assert_steps_ran_in_containers(contained)
    assert_same_metrics(trained, contained)


def test_sharded_training_in_containers_matches_the_local_run(
    tmp_path: Path, dags_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "set"
    synth.generate(str(source), rows=30_000, shard_rows=10_000)
    conf = {"source": str(source), "sample_rows": 5000}
    local = run_in("local", monkeypatch, "sharded_training", dags_folder, conf)
    contained = run_in("container", monkeypatch, "sharded_training", dags_folder, conf)
    assert local.succeeded and contained.succeeded
    assert contained.mapped_count == local.mapped_count == 12
    assert_steps_ran_in_containers(contained)
    assert_same_metrics(local, contained)
