"""join: join two tables on a key column."""

from __future__ import annotations

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

HOWS = ("inner", "left", "right", "outer")
SPEC = StepSpec(
    name="join",
    summary="join two tables on a key column (the right side's duplicate columns dropped)",
    params={
        "on": Param("string", "the key column both tables have", required=True),
        "how": Param("string", "the kind of join", default="inner", choices=HOWS),
    },
    inputs={"left": Artifact("Parquet: the left table"), "right": Artifact("Parquet: the right table")},
    outputs={"data": Artifact("Parquet: the joined rows")},
)


def run(ctx: StepContext) -> None:
    left, right = ctx.read_parquet("left"), ctx.read_parquet("right")
    key = ctx.param("on")
    how = ctx.param("how")
    for side, frame in (("left", left), ("right", right)):
        if key not in frame.columns:
            raise StepError(
                f"input {side!r}: join column {key!r} is missing; columns: {', '.join(map(str, frame.columns))}"
            )
    overlap = (set(left.columns) & set(right.columns)) - {key}
    joined = left.merge(right.drop(columns=sorted(overlap)), on=key, how=how)
    if joined.empty:
        raise StepError(f"joining on {key!r} ({how}) produced no rows; do the two sources share keys?")
    ctx.write_parquet("data", joined)
    ctx.metrics.update(rows=len(joined), columns=len(joined.columns), dropped_duplicate_columns=len(overlap))
