"""score_shard: one featurized shard scored with the champion, streamed, written whole or not at all.

Idempotent per shard: the output's URI depends only on the run and the shard, and it is replaced
atomically, so a retried or re-run shard leaves exactly one file with the same rows; a killed one leaves none.
"""

from __future__ import annotations

import io

import joblib
import numpy as np
import pyarrow as pa

from sluice_steps.contract import StepContext, StepError
from sluice_steps.shards import BATCH_ROWS, ID, iter_batches, parquet_writer, xy
from sluice_steps.spec import Artifact, Param, StepSpec

SCHEMA = pa.schema([(ID, pa.int64()), ("score", pa.float32()), ("prediction", pa.int8()), ("model", pa.string())])
SPEC = StepSpec(
    name="score_shard",
    summary="one featurized shard scored with the champion, streamed",
    params={
        "batch_rows": Param("integer", "rows held in memory at a time", default=BATCH_ROWS),
    },
    inputs={
        "model": Artifact("the champion's model (train_sgd, train_sample or pick_champion)"),
        "features": Artifact("Parquet: one featurized shard"),
    },
    outputs={"scores": Artifact("Parquet: id, score, prediction, model")},
)


def run(ctx: StepContext) -> None:
    with ctx.open_input("model") as handle:
        model = joblib.load(io.BytesIO(handle.read()))
    if not isinstance(model, dict) or "estimator" not in model:
        raise StepError(f"input 'model': {ctx.input('model')} is not a model written by train_sgd or train_sample")
    batch_rows = ctx.param("batch_rows")
    rows = positives = 0
    with ctx.open_output("scores") as out, parquet_writer(out, SCHEMA) as writer:
        for batch in iter_batches(ctx.input("features"), None, batch_rows):
            x, _ = xy(batch)
            scores = model["estimator"].predict_proba(x)[:, 1].astype(np.float32)
            predictions = (scores >= 0.5).astype(np.int8)
            writer.write_table(
                pa.table(
                    {
                        ID: batch.column(ID),
                        "score": scores,
                        "prediction": predictions,
                        "model": pa.array([model["candidate"]] * len(scores), pa.string()),
                    },
                    schema=SCHEMA,
                )
            )
            rows += len(scores)
            positives += int(predictions.sum())
    ctx.metrics.update(rows=rows, positive_rate=round(positives / rows, 6) if rows else 0.0, model=model["candidate"])
