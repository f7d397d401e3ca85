"""ingest_shard: one raw shard → validated, with its statistics (the map half); no copy of the shard.

Streams the shard batch by batch through the cleaning rule (``sluice_steps.clean``: conform to the raw schema,
drop repeated ids, add ``log_amount``) and gathers the statistics of the clean rows. A schema the pipeline cannot
use fails the step naming the column, before anything downstream runs. The clean rows are not written: featurize
applies the same rule to the raw shard, which costs less than writing a float64 copy here and reading it back.
Memory is the batch plus the shard's ids seen so far (``SeenIds``: a byte per row for the usual compact id range).
"""

from __future__ import annotations

from sluice_steps.clean import clean_batches
from sluice_steps.contract import StepContext, StepError
from sluice_steps.shards import BATCH_ROWS, Stats
from sluice_steps.spec import Artifact, Param, StepSpec

SPEC = StepSpec(
    name="ingest_shard",
    summary="one raw shard validated and de-duplicated into its statistics (no copy of the shard)",
    params={
        "batch_rows": Param("integer", "rows held in memory at a time", default=BATCH_ROWS),
    },
    inputs={"shard": Artifact("Parquet: one raw shard (its bytes are fingerprinted like any input)")},
    outputs={"stats": Artifact("JSON: the statistics of the shard's clean rows (their count in 'rows')")},
)


def run(ctx: StepContext) -> None:
    uri = ctx.input("shard")
    stats = Stats()
    rows_in = 0
    for raw_rows, clean in clean_batches(uri, ctx.param("batch_rows")):
        rows_in += raw_rows
        stats.add_batch(clean)
    if not rows_in:
        raise StepError(f"input 'shard' ({uri}) has no rows")
    ctx.write_json("stats", stats.to_json())
    ctx.metrics.update(
        rows_in=rows_in,
        rows=stats.rows,
        duplicates=rows_in - stats.rows,
        null_cells=sum(m.nulls for m in stats.columns.values()),
    )
