"""score: score a batch with the registry's current model; write the interval's partition, replacing it.

The model is whatever ``models/{model_name}/current`` points at (model.joblib + transformer.joblib of that
version). Rows go to ``tables/{table}/{model_name}/interval=…/shard-{k}-of-{n}.parquet``: with ``shards`` > 1
each mapped instance scores its share of the rows (row number modulo ``shards``), so one failed shard
leaves the other shards' files in place.
"""

from __future__ import annotations

import io

from sluice_steps import registry
from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec
from sluice_steps.tables import partition_name, slot, slot_minutes, write_partition_file

SPEC = StepSpec(
    name="score",
    summary="score a batch with the registry's current model into the interval's partition of a table",
    params={
        "model_name": Param("string", "the model's name in the registry", required=True),
        "interval_start": Param("string", "ISO timestamp inside the interval (floored to it)", required=True),
        "interval_minutes": Param("integer", "length of the interval in minutes; divides a day", default=15),
        "table": Param("string", "the table's name under tables/ in the artifact root", default="scores"),
        "shards": Param("integer", "how many instances share the batch", default=1),
        "shard": Param("integer", "which share this instance scores (0 to shards - 1)", default=0),
        "registry": Param("string", "URI of the model registry (default: models/ under the artifact root)", default=""),
    },
    inputs={"batch": Artifact("Parquet: the rows to score")},
    outputs={"report": Artifact("JSON: the partition and file written, rows and the model version")},
    pure=False,
    effects="reads the model models/{model_name}/current points at (not an input), and replaces its shard's file "
    "in tables/{table}/{model_name}/interval=.../ under the artifact root",
)


def run(ctx: StepContext) -> None:
    import joblib

    name = ctx.param("model_name")
    table = ctx.param("table")
    shards = ctx.param("shards")
    shard = ctx.param("shard")
    if shards < 1 or not 0 <= shard < shards:
        raise StepError(f"params 'shard'/'shards': shard {shard} of {shards} does not exist")
    minutes = slot_minutes(ctx, 15)
    start = slot(ctx.param("interval_start"), minutes)
    base = f"{(ctx.param('registry') or ctx.shared_uri('models')).rstrip('/')}/{name}"
    current = registry.read_current(base)
    if current is None:
        raise StepError(
            f"model {name!r} has no current version in {base}; register one first: "
            "run the ml_training_pipeline DAG (sluice demo ml_training_pipeline)"
        )
    version = current["version"]
    with ctx.open_uri(f"{base}/{version}/model.joblib", what=f"model {name!r} version {version}") as handle:
        model = joblib.load(io.BytesIO(handle.read()))
    with ctx.open_uri(f"{base}/{version}/transformer.joblib", what=f"transformer of {name!r} v{version}") as handle:
        transformer = joblib.load(io.BytesIO(handle.read()))
    frame = ctx.read_parquet("batch")
    features = transformer["features"]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise StepError(f"input 'batch': feature column(s) {', '.join(map(repr, missing[:5]))} missing")
    mine = frame.iloc[[i for i in range(len(frame)) if i % shards == shard]].reset_index(drop=True)
    import pandas as pd

    x = pd.DataFrame(transformer["scaler"].transform(mine[features]), columns=features)  # as at fit time

    scored = pd.DataFrame(
        {
            "id": mine["id"] if "id" in mine.columns else range(len(mine)),
            "score": model.predict_proba(x)[:, 1].round(6),
            "prediction": model.predict(x),
        }
    )
    scored["model_version"] = version
    scored["interval_start"] = start.isoformat()
    partition = f"{ctx.shared_uri('tables', table, name)}/{partition_name(start, minutes)}"
    target = write_partition_file(ctx, f"{partition}/shard-{shard}-of-{shards}.parquet", scored)
    ctx.write_json("report", {"partition": partition, "file": target, "rows": len(scored), "model_version": version})
    ctx.metrics.update(
        rows=len(scored),
        model_version=version,
        positive_rate=round(float(scored["prediction"].mean()) if len(scored) else 0.0, 4),
        partition=partition_name(start, minutes),
    )
