"""The training pipeline end to end through real Airflow (``dag.test`` on SQLite, steps as processes):
dynamic task mapping over a grid, the champion, the versioned registry and failure isolation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sluice import registry
from sluice.runs import RunOutcome, run_dag

from tests.pipelines.conftest import BROKEN_CANDIDATE, SMALL_GRID
from tests.support.registry import example_model, version_metadata

pytestmark = pytest.mark.slow  # whole pipeline runs through Airflow (10-40 s each)

FIXED = {"ingest_csv", "ingest_sql", "join", "validate", "featurize", "plan_grid", "plan_grid_highmem"}
FIXED |= {"champion", "evaluate", "publish"}
CACHEABLE_STEPS = {"join", "validate", "featurize", "champion", "evaluate"}


@pytest.fixture(scope="module")
def first_run(trained: RunOutcome) -> RunOutcome:
    return trained


def candidates(outcome: RunOutcome) -> list:
    return outcome.mapped("train") + outcome.mapped("train_highmem")


def test_mapping_expands_one_step_per_grid_entry_split_by_pool(first_run: RunOutcome) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    highmem = [e for e in SMALL_GRID if e.get("profile") == "highmem"]
    assert len(first_run.mapped("train")) == len(SMALL_GRID) - len(highmem) == 4
    assert len(first_run.mapped("train_highmem")) == len(highmem) == 1
    assert first_run.mapped_count == len(SMALL_GRID)
    with create_session() as session:
        queues = {
            (ti.task_id, ti.queue)
            for ti in session.scalars(select(TaskInstance).where(TaskInstance.run_id == first_run.run_id))
            if ti.map_index >= 0
        }
    assert queues == {("train", "default"), ("train_highmem", "highmem")}


def test_a_failed_candidate_fails_only_its_own_branch(first_run: RunOutcome) -> None:
    states = {t.result["metrics"].get("algorithm") if t.result else None: t.state for t in candidates(first_run)}
    failed = [t for t in candidates(first_run) if t.state != "success"]
    assert [t.state for t in failed] == ["failed"], states
    assert {t.task_id: t.state for t in first_run.tasks if t.map_index < 0} == dict.fromkeys(FIXED, "success")
    assert first_run.state == "success", "the champion and publish are the leaves, and they succeeded"


def test_champion_is_the_best_successful_candidate_by_the_metric(first_run: RunOutcome) -> None:
    scores = {
        json.loads(Path(t.outputs["evaluation"]).read_text())["candidate"]: t.metrics["test_roc_auc"]
        for t in candidates(first_run)
        if t.state == "success"
    }
    assert len(scores) == len(SMALL_GRID) - 1 and BROKEN_CANDIDATE not in scores
    champion = first_run.task("champion").metrics
    assert champion["candidates"] == len(scores)
    assert champion["champion_score"] == max(scores.values())
    assert scores[champion["champion"]] == max(scores.values())
    leaderboard = json.loads(Path(first_run.task("champion").outputs["leaderboard"]).read_text())
    assert [c["scores"]["roc_auc"] for c in leaderboard["candidates"]] == sorted(scores.values(), reverse=True)


def test_publish_registers_a_complete_version_and_points_current_at_it(first_run: RunOutcome) -> None:
    registration = json.loads(Path(first_run.task("publish").outputs["registration"]).read_text())
    assert registration["registered"] is True
    version = registration["version"]
    current = registry.current(example_model())
    assert current is not None and current["version"] == version
    folder = Path(registration["uri"])
    meta = version_metadata(example_model(), version)
    assert meta is not None and meta["champion"] == first_run.task("champion").metrics["champion"]
    for name in ("model.joblib", "transformer.joblib", "MODEL_CARD.md", "roc.png", "metrics.json"):
        assert (folder / name).is_file(), name
    assert (folder / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_card_has_the_metrics_table_the_leaderboard_and_the_plot(first_run: RunOutcome) -> None:
    card = Path(first_run.task("publish").outputs["model_card"]).read_text()
    assert "# Model card: breast-cancer-classifier · version" in card
    assert "| metric | value |" in card and "| roc_auc |" in card
    assert "![ROC curve](roc.png)" in card
    assert f"{len(SMALL_GRID) - 1} candidate(s) ranked by `roc_auc`" in card


def test_rerun_with_nothing_changed_is_served_from_the_cache_and_registers_nothing_new(
    first_run: RunOutcome, dags_folder: Path
) -> None:
    second = run_dag("ml_training_pipeline", dags_folder, {"grid": SMALL_GRID})
    assert second.state == "success"
    hits = {t.task_id for t in second.tasks if t.cache_hit}
    assert hits == CACHEABLE_STEPS | {"train", "train_highmem"}
    assert all(t.cache_hit for t in candidates(second) if t.state == "success")
    assert second.task("publish").metrics["registered"] == 0
    assert second.task("publish").metrics["version"] == first_run.task("publish").metrics["version"]


def test_failed_quality_gate_stops_publish(first_run: RunOutcome, dags_folder: Path) -> None:
    before = registry.current(example_model())
    gated = run_dag("ml_training_pipeline", dags_folder, {"grid": SMALL_GRID, "min_roc_auc": 0.99999})
    states = {t.task_id: t.state for t in gated.tasks if t.map_index < 0}
    assert states["evaluate"] == "failed"
    assert states["publish"] == "upstream_failed"
    assert gated.state == "failed"
    assert registry.current(example_model()) == before


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_versions_are_never_overwritten_and_current_flips_only_to_complete_ones(
    first_run: RunOutcome, dags_folder: Path
) -> None:
    name = "bc-versions"
    base = Path(registry.model_uri(name))
    seen: list[dict] = []
    stop = threading.Event()

    def watch() -> None:  # every state of `current` seen while the runs publish
        while not stop.is_set():
            try:
                pointer = json.loads((base / "current").read_text())
            except (FileNotFoundError, json.JSONDecodeError) as exc:
                if not isinstance(exc, FileNotFoundError):
                    seen.append({"torn": True})
                continue
            meta = version_metadata(name, pointer["version"])
            complete = meta is not None and all((base / pointer["version"] / f).is_file() for f in meta["files"])
            seen.append({"version": pointer["version"], "complete": complete})

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        one = run_dag("ml_training_pipeline", dags_folder, {"grid": SMALL_GRID, "model_name": name})
        assert one.task("publish").metrics["version"] == "1"
        v1 = _snapshot(base / "1")
        other_grid = [{"algorithm": "knn", "hyperparams": {"n_neighbors": 3}}]
        two = run_dag("ml_training_pipeline", dags_folder, {"grid": other_grid, "model_name": name})
        assert two.task("publish").metrics["version"] == "2"
        assert registry.current(name)["version"] == "2"
        again = run_dag(
            "ml_training_pipeline", dags_folder, {"grid": SMALL_GRID, "model_name": name, "model_version": "1"}
        )
    finally:
        stop.set()
        watcher.join()
    assert again.task("publish").state == "failed"
    assert _snapshot(base / "1") == v1, "a published version is never overwritten"
    assert registry.current(name)["version"] == "2"
    assert not [p for p in base.iterdir() if ".tmp-" in p.name], "no temp directory left behind"
    assert {s.get("version") for s in seen} == {"1", "2"}
    assert all(s.get("complete") for s in seen), [s for s in seen if not s.get("complete")]
