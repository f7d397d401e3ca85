"""The sharded pipeline's steps (dags/sharded_training.py) as real subprocesses under contract v1: the
map-reduce statistics, de-duplication, schema errors, and a score shard's idempotency and atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score
from sluice.artifacts import remove_partials
from sluice_steps import synth
from sluice_steps.clean import CLEAN_SCHEMA, SeenIds, clean_batch, clean_batches
from sluice_steps.shards import (
    CATEGORY,
    ID,
    LABEL,
    LOG_SKEWED,
    MISSING,
    NUMERIC,
    RAW_SCHEMA,
    SKEWED,
    BinnedRoc,
    Moments,
    Stats,
    feature_names,
    features_table,
    featurize,
    iter_batches,
    parquet_writer,
    xy,
)

from tests.steps.conftest import STEP_BIN, contract_env

# Tests marked slow run steps as processes that import pyarrow and scikit-learn (~1-3 s each).


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 000 rows in 3 shards, generated (with the set's nulls, skew and repeated rows)."""
    directory = tmp_path_factory.mktemp("sharded-set")
    synth.generate(str(directory), rows=12_000, shard_rows=4_000)
    return directory


@pytest.fixture(scope="module")
def ingested(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """Each shard through ingest_shard: the raw shard it read and the statistics it wrote."""
    root = tmp_path_factory.mktemp("ingested")
    outputs = []
    for index, shard in enumerate(sorted(dataset.glob("*.parquet"))):
        result = run_contract_step("ingest_shard", root / str(index), {"shard": str(shard)}, {"stats": "stats.json"})
        assert result.returncode == 0, result.stderr
        outputs.append({"shard": str(shard), "stats": str(root / str(index) / "stats.json")})
    return outputs


def run_contract_step(
    step: str, prefix: Path, inputs: dict[str, object], outputs: dict[str, str], params: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    env = contract_env(prefix, inputs, outputs, params or {})
    return subprocess.run([STEP_BIN, step], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_merged_statistics_equal_one_pass_over_all_rows(ingested: list[dict[str, str]], tmp_path: Path) -> None:
    # Merged in reverse shard order: the reduce must not depend on the order the parts arrive in.
    parts = [entry["stats"] for entry in reversed(ingested)]
    result = run_contract_step("merge_stats", tmp_path, {"parts": parts}, {"stats": "stats.json"})
    assert result.returncode == 0, result.stderr
    merged = json.loads((tmp_path / "stats.json").read_text())

    every_row = pa.Table.from_batches(
        [batch for entry in ingested for _, batch in clean_batches(entry["shard"])], schema=CLEAN_SCHEMA
    )
    assert merged["rows"] == every_row.num_rows
    for name in NUMERIC:
        column = every_row.column(name)
        values = column.drop_null().to_numpy()
        figures = merged["columns"][name]
        assert figures["nulls"] == column.null_count
        assert figures["count"] == len(values)
        assert figures["mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
        assert figures["m2"] / figures["count"] == pytest.approx(values.var(), rel=1e-9)
        assert (figures["min"], figures["max"]) == (values.min(), values.max())
    regions = every_row.column(CATEGORY).fill_null(MISSING)
    assert merged["categories"] == {r["values"]: r["counts"] for r in pc.value_counts(regions).to_pylist()}
    labels = every_row.column(LABEL).to_numpy()
    assert merged["labels"] == {"0": int((labels == 0).sum()), "1": int((labels == 1).sum())}


@pytest.mark.slow
def test_ingest_drops_repeated_rows_and_says_how_many(dataset: Path, ingested: list[dict[str, str]]) -> None:
    raw = pq.read_table(sorted(dataset.glob("*.parquet"))[0])
    unique = len(np.unique(raw.column(ID).to_numpy()))
    assert unique < raw.num_rows, "the generator repeats some rows"
    assert json.loads(Path(ingested[0]["stats"]).read_text())["rows"] == unique
    result = json.loads((Path(ingested[0]["stats"]).parent / "_result.json").read_text())
    assert result["metrics"]["duplicates"] == raw.num_rows - unique


@pytest.mark.slow
def test_ingest_writes_its_statistics_and_no_copy_of_the_shard(ingested: list[dict[str, str]]) -> None:
    written = sorted(path.name for path in Path(ingested[0]["stats"]).parent.iterdir())
    assert written == ["_result.json", "stats.json"]


@pytest.mark.slow
def test_ingest_names_a_missing_column_and_leaves_no_output(dataset: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    pq.write_table(pq.read_table(sorted(dataset.glob("*.parquet"))[0]).drop_columns([LABEL]), broken)
    result = run_contract_step("ingest_shard", tmp_path / "out", {"shard": str(broken)}, {"stats": "stats.json"})
    assert result.returncode == 2
    assert f"column(s) '{LABEL}' missing" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def scoring_inputs(ingested: list[dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A featurized shard and a model trained on it: what score_shard reads."""
    root = tmp_path_factory.mktemp("scoring")
    merged = run_contract_step(
        "merge_stats", root / "stats", {"parts": [e["stats"] for e in ingested]}, {"stats": "stats.json"}
    )
    assert merged.returncode == 0, merged.stderr
    featurized = run_contract_step(
        "featurize_shard",
        root / "featurize",
        {"shard": ingested[0]["shard"], "stats": str(root / "stats" / "stats.json")},
        {"features": "features.parquet", "sample": "sample.parquet"},
    )
    assert featurized.returncode == 0, featurized.stderr
    features = str(root / "featurize" / "features.parquet")
    trained = run_contract_step("train_sgd", root / "train", {"shards": [features]}, {"model": "model.joblib"})
    assert trained.returncode == 0, trained.stderr
    return {"features": features, "model": str(root / "train" / "model.joblib")}


@pytest.mark.slow
def test_featurize_over_the_raw_shard_gives_the_features_of_a_clean_copy(
    ingested: list[dict[str, str]], scoring_inputs: dict[str, str], tmp_path: Path
) -> None:
    """What the pipeline computed when ingest wrote a clean shard and featurize read it back, recomputed here from
    the cleaning rule: featurizing the raw shard directly gives the same bits."""
    stats_uri = Path(scoring_inputs["features"]).parents[1] / "stats" / "stats.json"  # what featurize was given
    stats = Stats.from_json(json.loads(stats_uri.read_text()))
    clean_copy = tmp_path / "clean.parquet"
    with open(clean_copy, "wb") as handle, parquet_writer(handle, CLEAN_SCHEMA) as writer:
        for _, batch in clean_batches(ingested[0]["shard"]):
            writer.write_batch(batch)
    before = pa.concat_tables(features_table(batch, stats) for batch in iter_batches(str(clean_copy)))
    assert pq.read_table(scoring_inputs["features"]).equals(before)


@pytest.mark.slow
def test_rescoring_a_shard_leaves_one_file_with_the_same_rows(scoring_inputs: dict[str, str], tmp_path: Path) -> None:
    prefix = tmp_path / "score" / "0"
    tables = []
    for _ in range(2):  # a retry, or the shard cleared and run again
        result = run_contract_step("score_shard", prefix, scoring_inputs, {"scores": "scores.parquet"})
        assert result.returncode == 0, result.stderr
        tables.append(pq.read_table(prefix / "scores.parquet"))
    assert sorted(p.name for p in prefix.iterdir()) == ["_result.json", "scores.parquet"]
    assert tables[0].equals(tables[1])
    assert tables[0].num_rows == pq.read_metadata(scoring_inputs["features"]).num_rows


@pytest.mark.slow
def test_a_killed_score_shard_leaves_no_file_at_its_target(scoring_inputs: dict[str, str], tmp_path: Path) -> None:
    """SIGKILL (an OOM kill, a lost node) while the shard's file is being written: nothing appears at the
    target, and the temp it was writing is what the operator sweeps before the retry (remove_partials)."""
    prefix = tmp_path / "score" / "0"
    # 200 k rows in small batches: the step writes its file over ~200 batches, long enough to be caught mid-write.
    shard = pq.read_table(scoring_inputs["features"])
    big = tmp_path / "features.parquet"
    pq.write_table(pa.concat_tables([shard] * max(1, 200_000 // shard.num_rows)), big)
    inputs = {**scoring_inputs, "features": str(big)}
    env = contract_env(prefix, inputs, {"scores": "scores.parquet"}, {"batch_rows": 1024})
    proc = subprocess.Popen([STEP_BIN, "score_shard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(prefix.glob(".scores.parquet.tmp-*")):
        assert proc.poll() is None, "the step finished before it could be killed mid-write"
        assert time.monotonic() < deadline, "the step never started writing"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (prefix / "scores.parquet").exists()
    assert not (prefix / "_result.json").exists()
    swept = remove_partials(str(prefix))
    assert len(swept) == 1 and ".scores.parquet.tmp-" in swept[0]
    assert list(prefix.iterdir()) == []


def test_binned_roc_auc_is_sklearns_within_a_bin() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(50_000) < 0.4).astype(np.int8)
    scores = np.clip(rng.normal(0.45 + 0.2 * labels, 0.2), 0, 1)
    roc = BinnedRoc()
    for start in range(0, len(labels), 4096):  # batch by batch, as the training steps evaluate
        roc.add(scores[start : start + 4096], labels[start : start + 4096])
    assert roc.auc() == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)

    narrow = 0.5 + (scores - 0.5) * 1e-3  # an averaged SGD crowds its scores near 0.5
    crowded = BinnedRoc()
    crowded.add(narrow, labels)
    assert crowded.auc() == pytest.approx(roc_auc_score(labels, narrow), abs=1e-3)
    assert roc.rows == len(labels)


def test_the_generator_makes_the_same_shard_every_time(tmp_path: Path) -> None:
    first = synth.generate(str(tmp_path / "a"), rows=5_000, shard_rows=2_000, seed=11)
    synth.generate(str(tmp_path / "b"), rows=5_000, shard_rows=2_000, seed=11)
    assert first["shards"] == 3 and first["files"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for name in first["files"]:
        assert pq.read_table(tmp_path / "a" / name).equals(pq.read_table(tmp_path / "b" / name))
    other = synth.generate(str(tmp_path / "c"), rows=5_000, shard_rows=2_000, seed=12)
    assert not pq.read_table(tmp_path / "c" / other["files"][0]).equals(
        pq.read_table(tmp_path / "a" / first["files"][0])
    )


@pytest.mark.parametrize("id_range", [(0, 999), None], ids=["compact range: a byte per id", "no range: sorted ids"])
def test_seen_ids_keep_the_first_row_of_each_id_across_batches(id_range: tuple[int, int] | None) -> None:
    seen = SeenIds(id_range, rows=1000)
    first = seen.keep(np.array([5, 7, 5, 9]))
    second = seen.keep(np.array([9, 10, 7, 11, 11]))
    assert first.tolist() == [True, True, False, True]
    assert second.tolist() == [False, True, False, True, False]


def raw_batch(ids: list[int], amounts: list[float | None]) -> pa.RecordBatch:
    rows = len(ids)
    columns = {
        ID: pa.array(ids, pa.int64()),
        CATEGORY: pa.array(["r00"] * rows, pa.string()),
        SKEWED: pa.array(amounts, pa.float64()),
        **{name: pa.array([float(i) for i in range(rows)], pa.float64()) for name in NUMERIC if name != LOG_SKEWED},
        LABEL: pa.array([i % 2 for i in range(rows)], pa.int8()),
    }
    return pa.RecordBatch.from_pydict({name: columns[name] for name in RAW_SCHEMA.names}, schema=RAW_SCHEMA)


def test_cleaning_keeps_the_first_row_of_an_id_and_a_missing_amount_missing() -> None:
    batch = raw_batch([1, 2, 1, 3, 4], [None, 0.0, 5.0, 10.0, -3.0])
    clean = clean_batch(batch, SeenIds((1, 4), rows=5), "shard.parquet")
    assert clean.column(ID).to_pylist() == [1, 2, 3, 4], "the repeated id 1 dropped, its first row kept"
    logged = clean.column(LOG_SKEWED).to_pylist()
    assert logged[0] is None, "a missing amount stays missing (imputed at featurize, not taken for 0)"
    assert logged[1:] == [0.0, pytest.approx(np.log1p(10.0)), 0.0], "log1p(max(amount, 0))"


def test_featurize_standardizes_with_the_global_statistics_and_encodes_the_region() -> None:
    stats = Stats()
    stats.columns["f00"] = Moments(count=4, mean=10.0, m2=4 * 4.0, min=6.0, max=14.0)  # std 2
    stats.categories = {"r00": 3, "r01": 2, MISSING: 1}
    columns = {name: pa.array([1.0, 2.0, 3.0], pa.float64()) for name in NUMERIC}
    columns["f00"] = pa.array([12.0, None, 10.0], pa.float64())
    batch = pa.RecordBatch.from_pydict(
        {
            **columns,
            SKEWED: pa.array([5.0, None, 1.0], pa.float64()),
            CATEGORY: pa.array(["r01", None, "r99"], pa.string()),  # r99: never seen in the statistics
        }
    )
    out = featurize(batch, stats)
    names = feature_names(stats)
    column = {name: out[:, i].tolist() for i, name in enumerate(names)}
    assert column["f00"] == [1.0, 0.0, 0.0], "(x - mean) / std, a null imputed with the mean"
    assert column["amount_missing"] == [0.0, 1.0, 0.0]
    assert [column[f"region={r}"] for r in ("__missing__", "r00", "r01")] == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]


@pytest.mark.slow  # a training step as a process
def test_a_training_step_scores_itself_on_the_holdout_as_sklearn_would(
    scoring_inputs: dict[str, str], tmp_path: Path
) -> None:
    import joblib

    holdout = [scoring_inputs["features"]]
    result = run_contract_step(
        "train_sgd",
        tmp_path,
        {"shards": holdout, "holdout": holdout},
        {"model": "model.joblib", "evaluation": "evaluation.json"},
        {"batch_rows": 1024},  # the held-out rows arrive in several batches
    )
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    model = joblib.load(tmp_path / "model.joblib")["estimator"]
    table = pq.read_table(holdout[0])
    x = np.column_stack([table.column(n).to_numpy() for n in table.schema.names if n not in (ID, LABEL)])
    y = table.column(LABEL).to_numpy()
    assert evaluation["candidate"] == "sgd_out_of_core" and evaluation["scores"]["rows"] == len(y)
    assert evaluation["scores"]["roc_auc"] == pytest.approx(roc_auc_score(y, model.predict_proba(x)[:, 1]), abs=1e-3)


def test_xy_gives_the_features_as_one_float32_matrix_and_views_the_labels() -> None:
    stats = Stats(categories={"r00": 1})
    batch = pa.RecordBatch.from_pydict(
        {
            ID: pa.array([1, 2, 3], pa.int64()),
            **{name: pa.array([0.5, 1.5, 2.5], pa.float32()) for name in feature_names(stats)},
            LABEL: pa.array([0, 1, 1], pa.int8()),
        }
    )
    table = pa.Table.from_batches([batch.slice(0, 1), batch.slice(1)])  # a column in two chunks
    for source in (batch, table):
        x, y = xy(source)
        assert x.dtype == np.float32 and x.shape == (3, len(feature_names(stats)))
        assert (x == np.array([[0.5], [1.5], [2.5]], np.float32)).all()
        assert y.tolist() == [0, 1, 1] and y.dtype == np.int8
    assert not xy(batch)[1].flags.owndata, "a batch's labels are viewed, not copied"
