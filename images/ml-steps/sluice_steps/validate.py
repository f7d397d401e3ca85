"""validate: schema, nulls, ranges and row count; every violation is listed, then the step fails."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.api import types

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec

KINDS = {
    "int": types.is_integer_dtype,
    "float": types.is_float_dtype,
    "number": types.is_numeric_dtype,
    "string": lambda s: types.is_string_dtype(s) or types.is_object_dtype(s),
    "bool": types.is_bool_dtype,
}
SPEC = StepSpec(
    name="validate",
    summary="schema, nulls, ranges and row count; every violation is listed, then the step fails",
    params={
        "schema": Param("object", f"column → kind ({', '.join(KINDS)})", default={}),
        "not_null": Param("array", "columns that must hold no null", default=[]),
        "ranges": Param("object", "column → [min, max]", default={}),
        "min_rows": Param(("integer", "null"), "rows the data must have at least"),
    },
    inputs={"data": Artifact("Parquet: the rows")},
    outputs={"report": Artifact("JSON: every check and its outcome")},
)


def checks(frame: pd.DataFrame, params: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    def record(check: str, column: str | None, ok: bool, detail: str) -> None:
        results.append({"check": check, "column": column, "ok": ok, "detail": detail})

    min_rows = params.get("min_rows")
    if min_rows is not None:
        record("min_rows", None, len(frame) >= min_rows, f"{len(frame)} rows, at least {min_rows} required")
    for column, kind in (params.get("schema") or {}).items():
        if kind not in KINDS:
            raise StepError(f"param 'schema': kind {kind!r} of column {column!r} is not one of {', '.join(KINDS)}")
        if column not in frame.columns:
            record("schema", column, False, f"column {column!r} is missing")
        else:
            ok = bool(KINDS[kind](frame[column]))
            record("schema", column, ok, f"column {column!r} is {frame[column].dtype}, expected {kind}")
    for column in params.get("not_null") or []:
        if column not in frame.columns:
            record("not_null", column, False, f"column {column!r} is missing")
        else:
            nulls = int(frame[column].isna().sum())
            record("not_null", column, nulls == 0, f"column {column!r} has {nulls} null value(s)")
    for column, bounds in (params.get("ranges") or {}).items():
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise StepError(f"param 'ranges': bounds of {column!r} must be [min, max], got {bounds!r}")
        if column not in frame.columns:
            record("range", column, False, f"column {column!r} is missing")
            continue
        low, high = bounds
        outside = int(((frame[column] < low) | (frame[column] > high)).sum())
        record("range", column, outside == 0, f"column {column!r}: {outside} row(s) outside [{low}, {high}]")
    return results


def run(ctx: StepContext) -> None:
    frame = ctx.read_parquet("data")
    results = checks(frame, ctx.params)
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise StepError(f"{len(failed)} validation check(s) failed: " + "; ".join(r["detail"] for r in failed))
    ctx.write_json("report", {"rows": len(frame), "checks": results})
    ctx.metrics.update(rows=len(frame), checks_passed=len(results))
