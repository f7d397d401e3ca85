"""merge_stats: the reduce half of the statistics: every shard's ``Stats`` merged into the dataset's.

Exact: the merged mean, variance, range and counts equal one pass over all rows (up to float rounding).
"""

from __future__ import annotations

import json

from sluice_steps.contract import StepContext, StepError
from sluice_steps.shards import LABEL, Stats
from sluice_steps.spec import Artifact, StepSpec

SPEC = StepSpec(
    name="merge_stats",
    summary="every shard's statistics merged into the dataset's (the reduce half)",
    inputs={"parts": Artifact("the stats JSONs of the ingest_shard instances (a fan-in)", many=True)},
    outputs={"stats": Artifact("JSON: the dataset's statistics")},
)


def run(ctx: StepContext) -> None:
    merged = Stats()
    parts = ctx.input_list("parts")
    for uri in parts:
        with ctx.open_uri(uri, "r", what="input 'parts'") as handle:
            try:
                merged.merge(Stats.from_json(json.load(handle)))
            except json.JSONDecodeError as exc:
                raise StepError(f"input 'parts': {uri} is not JSON ({exc})") from None
    if not merged.rows:
        raise StepError(f"input 'parts': the {len(parts)} shard(s) hold no rows")
    ctx.write_json("stats", merged.to_json())
    ctx.metrics.update(
        shards=len(parts),
        rows=merged.rows,
        positive_rate=round(merged.labels.get("1", 0) / merged.rows, 6),
        categories=len(merged.categories),
    )
    if len(merged.labels) < 2:
        raise StepError(f"the data has one class only ({LABEL}: {merged.labels}); a classifier needs two")
