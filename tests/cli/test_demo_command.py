"""``sluice demo`` (what ``make demo`` runs) as a user runs it: tables printed, exit code tells the truth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sluice_steps import synth


def run_demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICE_"))}
    env |= {"SLUICE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """One home for the module: later tests see what earlier demos registered."""
    home = tmp_path_factory.mktemp("demo-home")
    return lambda *args: run_demo(home, *args)


@pytest.mark.slow  # a full demo run
def test_demo_runs_the_pipeline_and_prints_states_metrics_and_artifacts(demo) -> None:
    result = demo()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "task states" in result.stdout and "publish" in result.stdout
    assert "roc_auc" in result.stdout
    assert "publish/MODEL_CARD.md" in result.stdout
    assert "mapped steps: 12 (train 8, train_highmem 4)" in result.stdout, "the default grid"
    assert "train_highmem[3]" in result.stdout
    assert ": success in" in result.stdout


@pytest.mark.slow  # a full demo run
def test_demo_runs_batch_scoring_by_name_with_the_model_just_registered(demo) -> None:
    result = demo("batch_scoring")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "score[1]" in result.stdout and "model_version" in result.stdout
    assert "mapped steps: 2 (score 2)" in result.stdout


@pytest.mark.slow  # `sluice demo` as a process (~10 s)
def test_demo_of_batch_scoring_without_a_model_names_the_fix(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "batch_scoring")
    assert result.returncode == 2
    assert "has none yet: run `sluice demo ml_training_pipeline` first" in result.stdout


@pytest.mark.slow  # a full demo run
def test_demo_exits_non_zero_when_a_task_fails(demo) -> None:
    result = demo("--conf", '{"min_roc_auc": 0.99999}')
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any("evaluate" in line and "failed" in line for line in lines)
    assert any("publish" in line and "upstream_failed" in line for line in lines)


@pytest.mark.slow  # `sluice demo` as a process (~10 s)
def test_demo_of_an_unknown_dag_names_the_ones_that_exist(demo) -> None:
    result = demo("no_such_pipeline")
    assert result.returncode == 2
    assert "no DAG 'no_such_pipeline'" in result.stdout and "ml_training_pipeline" in result.stdout


@pytest.mark.slow  # a full demo run (~45 s)
def test_demo_runs_the_sharded_pipeline_with_one_instance_per_shard_and_scores_every_row(tmp_path: Path) -> None:
    source = tmp_path / "set"
    synth.generate(str(source), rows=30_000, shard_rows=10_000)  # 3 shards, not the demo set's 4
    home = tmp_path / "home"
    result = run_demo(home, "sharded_training", "--conf", json.dumps({"source": str(source), "sample_rows": 5000}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "mapped steps: 12 (featurize 3, ingest 3, score 3, train_sample 3)" in result.stdout, (
        "mapping follows the data"
    )
    assert "peak memory / profile" in result.stdout
    assert re.search(r"ingest\[2\] .* success .* \d+ / 2048 MiB", result.stdout), "each step's peak beside its profile"
    assert re.search(r"champion .* roc_auc_sgd_out_of_core", result.stdout)
    # 10 k-row shards are far too small for their hand-off: the summary says so, and by how much to grow them
    assert re.search(r"  ingest: \d+\.\d\d s, \d+% of its \d+\.\d\d s step \(3 instances\): over 10%", result.stdout)
    (run,) = (home / "artifacts" / "sharded_training").iterdir()
    stats = json.loads((run / "stats" / "stats.json").read_text())
    scored = [pq.read_metadata(path).num_rows for path in sorted(run.glob("score/*/scores.parquet"))]
    clean = [json.loads(path.read_text())["rows"] for path in sorted(run.glob("ingest/*/stats.json"))]
    assert len(clean) == 3 and len(scored) == 3 and sum(scored) == sum(clean), "every clean row scored exactly once"
    assert stats["rows"] == sum(clean[:2]), "the statistics come from the training shards only (the last is held out)"
