"""featurize_shard: a raw shard, cleaned → float32 features with the dataset's statistics, plus a small sample.

Cleans the raw shard with the rule ingest_shard validated it with (``sluice_steps.clean``: the same rows, the
same ``log_amount``), so ingest writes no clean copy for it to read back. Standardizes with the global mean/std
(from merge_stats, so every shard gets the same transform), imputes nulls, one-hot encodes the region over the
global vocabulary. The sample (rows picked by a hash of their id, so the same rows on every run) feeds the
candidate models; its size is bounded by ``sample_rows`` overall.

A ``held_out`` shard (one the models are evaluated on) draws no sample: its sample output holds no rows, so none
of its rows can reach a candidate's training. The DAG computes the statistics from the training shards only, so
``sample_rows`` over their rows is the fraction to draw.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sluice_steps.clean import clean_batches
from sluice_steps.contract import StepContext
from sluice_steps.shards import BATCH_ROWS, ID, Stats, features_schema, features_table, parquet_writer
from sluice_steps.spec import Artifact, Param, StepSpec

SPEC = StepSpec(
    name="featurize_shard",
    summary="a raw shard, cleaned, as float32 features with the dataset's statistics, plus a small hashed sample",
    params={
        "batch_rows": Param("integer", "rows held in memory at a time", default=BATCH_ROWS),
        "sample_rows": Param("integer", "rows of the sample over the shards the statistics cover", default=50_000),
        "held_out": Param("boolean", "the shard is held out for evaluation: it draws no sample", default=False),
    },
    inputs={
        "shard": Artifact("Parquet: one raw shard (validated by ingest_shard, cleaned here by the same rule)"),
        "stats": Artifact("JSON: the dataset's statistics (merge_stats)"),
    },
    outputs={
        "features": Artifact("Parquet: the shard's features"),
        "sample": Artifact("Parquet: the shard's share of the sample"),
    },
)

# Knuth's multiplicative hash: ids spread evenly over [0, 2^32).
HASH = np.uint64(2654435761)


def in_sample(ids: np.ndarray, fraction: float) -> np.ndarray:
    buckets = (ids.astype(np.uint64) * HASH) % np.uint64(2**32)
    return buckets < np.uint64(int(fraction * 2**32))


def run(ctx: StepContext) -> None:
    stats = Stats.from_json(ctx.read_json("stats"))
    batch_rows = ctx.param("batch_rows")
    fraction = 0.0 if ctx.param("held_out") else min(1.0, ctx.param("sample_rows") / stats.rows)
    schema = features_schema(stats)
    rows = sampled = 0
    with (
        ctx.open_output("features") as features_out,
        ctx.open_output("sample") as sample_out,
        parquet_writer(features_out, schema) as features_writer,
        parquet_writer(sample_out, schema) as sample_writer,
    ):
        for _, batch in clean_batches(ctx.input("shard"), batch_rows):
            table = features_table(batch, stats)
            features_writer.write_table(table)
            picked = table.filter(pa.array(in_sample(batch.column(ID).to_numpy(), fraction)))
            sample_writer.write_table(picked)
            rows += table.num_rows
            sampled += picked.num_rows
    ctx.metrics.update(rows=rows, sample_rows=sampled, features=len(schema) - 2, held_out=ctx.param("held_out"))
