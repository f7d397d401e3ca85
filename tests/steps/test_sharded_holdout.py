"""What the sharded pipeline learns from: no held-out row reaches a training step, and a missing amount is imputed
like any missing value (not taken for an amount of 0).

The steps run in this process (their ``run`` functions, as ``bench/scale.py``'s single process calls them) over
real generated shards; the routing between them is the DAG's own task functions (dags/sharded_training.py), so
the test covers the wiring that decides which shard is held out, not a copy of it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sluice_steps import synth
from sluice_steps.contract import StepContext
from sluice_steps.shards import CATEGORY, FEATURES, ID, LABEL, LOG_SKEWED, SKEWED, Stats

REPO = Path(__file__).resolve().parents[2]


def call_step(step: str, prefix: Path, inputs: dict[str, Any], outputs: dict[str, str], **params: Any) -> StepContext:
    """One step's ``run`` in this process, with the params its spec does not set taken from the spec."""
    module = importlib.import_module(f"sluice_steps.{step}")
    ctx = StepContext(
        step=step,
        inputs=inputs,
        outputs={name: str(prefix / filename) for name, filename in outputs.items()},
        params=params,
        result_uri=str(prefix / "_result.json"),
        prefix=str(prefix),
        spec=module.SPEC,
    )
    module.run(ctx)
    return ctx


def ids_in(uris: list[str]) -> set[int]:
    return {int(i) for uri in uris for i in pq.read_table(uri, columns=[ID]).column(ID).to_numpy()}


def ingest_and_split(
    dag: Any, data: Path, prefix: Path, holdout_fraction: float
) -> tuple[list[str], list[StepContext], dict[str, Any], dict[str, Any]]:
    """ingest over every raw shard of ``data``, then the DAG's split: the raw shards, ingest's contexts, the DAG's
    routing task functions and split's result."""
    raw = sorted(str(path) for path in data.glob("*.parquet"))
    ingested = [
        call_step("ingest_shard", prefix / f"ingest/{i}", {"shard": uri}, {"stats": "s.json"})
        for i, uri in enumerate(raw)
    ]
    task = {task_id: dag.get_task(task_id).python_callable for task_id in ("split", "per_shard", "roles")}
    split = task["split"](
        shards=[{"shard": uri} for uri in raw],  # list_shards' output, which ingest is mapped over
        parts=[c.outputs["stats"] for c in ingested],
        holdout_fraction=holdout_fraction,
    )
    return raw, ingested, task, split


def featurize_and_route(
    task: dict[str, Any], split: dict[str, Any], stats_uri: str, prefix: Path, sample_rows: int
) -> tuple[list[StepContext], dict[str, list[str]]]:
    """featurize over every shard as the DAG plans it (per_shard), then the DAG's roles: what each training step
    is given."""
    plans = task["per_shard"](shards=split["shards"], stats=stats_uri, batch_rows=1024, sample_rows=sample_rows)
    featurized = [
        call_step(
            "featurize_shard",
            prefix / f"featurize/{i}",
            plan["inputs"],
            {"features": "features.parquet", "sample": "sample.parquet"},
            **plan["step_params"],
        )
        for i, plan in enumerate(plans)
    ]
    routed = task["roles"](
        shards=split["shards"],
        features=[f.outputs["features"] for f in featurized],
        samples=[f.outputs["sample"] for f in featurized],
    )
    return featurized, routed


def ingest_then_featurize(shard: Path, prefix: Path) -> tuple[StepContext, pa.Table]:
    """One raw shard through ingest (its statistics) and featurize (with them): ingest's context, the features."""
    ingested = call_step("ingest_shard", prefix / "ingest", {"shard": str(shard)}, {"stats": "s.json"})
    featurized = call_step(
        "featurize_shard",
        prefix / "featurize",
        {"shard": str(shard), "stats": ingested.outputs["stats"]},
        {"features": "features.parquet", "sample": "sample.parquet"},
    )
    return ingested, pq.read_table(featurized.outputs["features"])


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "sharded_training.py"))
    assert bag.import_errors == {}
    return bag.dags["sharded_training"]


def test_no_held_out_row_reaches_a_training_input(dag: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    synth.generate(str(data), rows=20_000, shard_rows=4_000)  # 5 shards: 1 held out at the default 0.2
    raw, ingested, task, split = ingest_and_split(dag, data, tmp_path, dag.params["holdout_fraction"])
    held_out_raw = [uri for uri, shard in zip(raw, split["shards"], strict=True) if shard["held_out"]]
    assert len(held_out_raw) == 1 and held_out_raw[0] == raw[-1]
    held_out_ids = ids_in(held_out_raw)

    merged = call_step("merge_stats", tmp_path / "stats", {"parts": split["train_parts"]}, {"stats": "stats.json"})
    training_rows = sum(c.metrics["rows"] for c, s in zip(ingested, split["shards"], strict=True) if not s["held_out"])
    assert merged.metrics["rows"] == training_rows, (
        "the statistics (the features' transform) cover the training shards only"
    )

    sample_rows = 2_000
    featurized, routed = featurize_and_route(task, split, merged.outputs["stats"], tmp_path, sample_rows)
    # What the training steps are given: train_sgd's shards, the candidates' sample (train_sample), nothing else.
    assert ids_in(routed["holdout"]) == held_out_ids, "every held-out row is evaluated on"
    assert not ids_in(routed["train"]) & held_out_ids
    sample = ids_in(routed["samples"])
    assert not sample & held_out_ids
    assert 0.8 * sample_rows < len(sample) <= 1.2 * sample_rows, "sample_rows drawn from the training rows"
    # Belt and braces: a held-out shard's own sample output holds no row, whoever reads it.
    held_out_samples = [f.outputs["sample"] for f, s in zip(featurized, split["shards"], strict=True) if s["held_out"]]
    assert [pq.read_metadata(uri).num_rows for uri in held_out_samples] == [0]

    candidate = dag.params["candidates"][0]
    trained = call_step(
        "train_sample",
        tmp_path / "train_sample",
        {"sample": routed["samples"], "holdout": routed["holdout"]},
        {"model": "model.joblib", "evaluation": "evaluation.json"},
        **candidate,
        max_rows=sample_rows * 2,
    )
    assert trained.metrics["rows"] == len(sample)


def test_a_missing_amount_is_imputed_not_taken_for_an_amount_of_zero(tmp_path: Path) -> None:
    amounts = [None, 0.0, 10.0, 100.0, None, 1.0]
    rows = len(amounts)
    shard = tmp_path / "shard.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(
        pa.table(
            {
                ID: pa.array(range(rows), pa.int64()),
                CATEGORY: pa.array(["r00"] * rows, pa.string()),
                SKEWED: pa.array(amounts, pa.float64()),
                **{name: pa.array(rng.normal(size=rows)) for name in FEATURES},
                LABEL: pa.array([0, 1] * (rows // 2), pa.int8()),
            }
        ),
        shard,
    )
    ingested, features = ingest_then_featurize(shard, tmp_path)
    stats = Stats.from_json(json.loads(Path(ingested.outputs["stats"]).read_text()))
    assert (stats.columns[LOG_SKEWED].nulls, stats.columns[LOG_SKEWED].count) == (2, 4), (
        "a missing amount stays missing"
    )
    assert stats.columns[LOG_SKEWED].min == 0.0 and stats.columns[LOG_SKEWED].max == pytest.approx(np.log1p(100.0))

    logged = features.column(LOG_SKEWED).to_pylist()
    missing = features.column(f"{SKEWED}_missing").to_pylist()
    assert [logged[0], logged[4]] == [0.0, 0.0], "imputed with the mean (0 once standardized), like f03 or f07"
    assert logged[1] < 0, "a real amount of 0 is below the mean, not imputed"
    assert missing == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_featurize_drops_a_repeated_id_keeping_the_row_ingest_kept(tmp_path: Path) -> None:
    rows = 6
    rng = np.random.default_rng(1)
    shard = tmp_path / "shard.parquet"
    pq.write_table(
        pa.table(
            {
                ID: pa.array([10, 11, 12, 11, 13, 10], pa.int64()),  # 11 and 10 repeated, with other values
                CATEGORY: pa.array(["r00", "r01", "r00", "r02", "r01", "r00"], pa.string()),
                SKEWED: pa.array([1.0, None, 3.0, 4.0, 5.0, 6.0], pa.float64()),
                **{name: pa.array(rng.normal(size=rows)) for name in FEATURES},
                LABEL: pa.array([0, 1, 0, 1, 1, 0], pa.int8()),
            }
        ),
        shard,
    )
    ingested, features = ingest_then_featurize(shard, tmp_path)
    assert features.column(ID).to_pylist() == [10, 11, 12, 13], "each id once, in the order first seen"
    assert features.num_rows == ingested.metrics["rows"] == rows - ingested.metrics["duplicates"]
    assert features.column(f"{SKEWED}_missing").to_pylist() == [0.0, 1.0, 0.0, 0.0], "id 11's first row: no amount"
    assert features.column(LABEL).to_pylist() == [0, 1, 0, 1], "the first row of each id"
    assert f"{CATEGORY}=r02" not in features.schema.names, "r02 came only on a dropped repeat: ingest never counted it"


class OpenCounter:
    """Every open of a local file in ``watched``, by path: Python's ``open`` (which fsspec's local files and so
    ``iter_batches`` and the step context use) and ``pyarrow.parquet.read_table`` (which opens a path natively)."""

    def __init__(self, watched: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        import builtins

        self.watched = {str(Path(uri).resolve()): uri for uri in watched}
        self.opens: dict[str, int] = dict.fromkeys(watched, 0)
        real_open, real_read_table = builtins.open, pq.read_table

        def python_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            self.saw(file)
            return real_open(file, *args, **kwargs)

        def read_table(source: Any, *args: Any, **kwargs: Any) -> Any:
            self.saw(source)
            return real_read_table(source, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", python_open)
        monkeypatch.setattr(pq, "read_table", read_table)

    def saw(self, uri: Any) -> None:
        if isinstance(uri, str | Path):
            key = self.watched.get(str(Path(str(uri).removeprefix("file://")).resolve()))
            if key is not None:
                self.opens[key] += 1

    def reset(self) -> None:
        self.opens = dict.fromkeys(self.opens, 0)


def test_each_model_reads_each_held_out_shard_once(dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    synth.generate(str(data), rows=8_000, shard_rows=2_000)  # 4 shards; 2 held out at 0.5
    _, _, task, split = ingest_and_split(dag, data, tmp_path, 0.5)
    merged = call_step("merge_stats", tmp_path / "stats", {"parts": split["train_parts"]}, {"stats": "stats.json"})
    _, routed = featurize_and_route(task, split, merged.outputs["stats"], tmp_path, 2_000)
    assert len(routed["holdout"]) == 2
    counter = OpenCounter(routed["holdout"], monkeypatch)
    models: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("train_sgd", {"shards": routed["train"]}, {"epochs": 2, "batch_rows": 1024})
    ]
    models += [
        ("train_sample", {"sample": routed["samples"]}, {**c, "batch_rows": 1024}) for c in dag.params["candidates"]
    ]
    for index, (step, inputs, params) in enumerate(models):
        counter.reset()
        call_step(
            step,
            tmp_path / f"model/{index}",
            {**inputs, "holdout": routed["holdout"]},
            {"model": "model.joblib", "evaluation": "evaluation.json"},
            **params,
        )
        assert list(counter.opens.values()) == [1, 1], f"{step} {params}: held-out shards opened {counter.opens}"
