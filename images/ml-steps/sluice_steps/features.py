"""features: derived features of one day's rows, written as that day's partition (replaced whole).

``tables/{table}/ds=YYYY-MM-DD/features.parquet``: one file per day, so a backfill over N days writes N
partitions and re-running a day replaces its partition instead of adding rows.
"""

from __future__ import annotations

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec
from sluice_steps.tables import partition_name, slot, write_partition_file

RATIOS = {
    "area_per_perimeter": ("mean area", "mean perimeter"),
    "worst_to_mean_radius": ("worst radius", "mean radius"),
    "worst_to_mean_concavity": ("worst concavity", "mean concavity"),
}
SPEC = StepSpec(
    name="features",
    summary="derived features of one day's rows, written as that day's partition of a table",
    params={
        "ds": Param("string", "ISO date or timestamp of the day", required=True),
        "table": Param("string", "the table's name under tables/ in the artifact root", default="features"),
    },
    inputs={"batch": Artifact("Parquet: the day's rows (batch with_target)")},
    outputs={"report": Artifact("JSON: the partition and file written, and the row count")},
    pure=False,
    effects="replaces the day's partition tables/{table}/ds=YYYY-MM-DD/ under the artifact root",
)


def run(ctx: StepContext) -> None:
    import numpy as np

    frame = ctx.read_parquet("batch")
    table = ctx.param("table")
    day = slot(ctx.param("ds"), 1440)
    needed = sorted({c for pair in RATIOS.values() for c in pair})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise StepError(f"input 'batch': column(s) {', '.join(map(repr, missing))} missing")
    out = frame[["id"]].copy()
    for name, (num, den) in RATIOS.items():
        out[name] = (frame[num] / frame[den].replace(0, np.nan)).round(6)
    out["ds"] = f"{day:%Y-%m-%d}"
    if "target" in frame.columns:
        out["target"] = frame["target"]
    partition = f"{ctx.shared_uri('tables', table)}/{partition_name(day, 1440)}"
    uri = write_partition_file(ctx, f"{partition}/features.parquet", out)
    ctx.write_json("report", {"partition": partition, "file": uri, "rows": len(out)})
    ctx.metrics.update(rows=len(out), features=len(RATIOS), partition=partition_name(day, 1440))
