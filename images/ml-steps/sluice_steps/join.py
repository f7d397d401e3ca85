"""join: join two tables on a key column."""

from __future__ import annotations

from sluice_steps.contract import StepContext, StepError


def run(ctx: StepContext) -> None:
    left, right = ctx.read_parquet("left"), ctx.read_parquet("right")
    key = ctx.param("on", kind=str)
    how = ctx.param("how", "inner", kind=str)
    if how not in ("inner", "left", "right", "outer"):
        raise StepError(f"param 'how': {how!r} is not one of inner, left, right, outer")
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
