"""batch: the "new data" of one interval, drawn deterministically from data scikit-learn ships.

Stands in for an upstream feed: the same interval always yields the same rows (seeded by the interval's
start), another interval other rows. Columns: ``id`` + the 30 breast-cancer measurements (no target),
plus ``target`` when ``with_target`` is set (for feature/label tables).
"""

from __future__ import annotations

from sluice_steps.contract import StepContext, StepError
from sluice_steps.spec import Artifact, Param, StepSpec
from sluice_steps.tables import slot, slot_minutes

SPEC = StepSpec(
    name="batch",
    summary="the rows of one interval, drawn deterministically (seeded by the interval's start)",
    params={
        "interval_start": Param("string", "ISO timestamp inside the interval (floored to it)", required=True),
        "interval_minutes": Param(
            "integer", "length of the interval in minutes; divides a day (15, 60, 1440)", default=15
        ),
        "rows": Param("integer", "rows to draw, 1 to 10000", default=40),
        "with_target": Param("boolean", "keep the target column (for feature and label tables)", default=False),
    },
    outputs={"batch": Artifact("Parquet: id + the 30 measurements (+ target)")},
)


def run(ctx: StepContext) -> None:
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    minutes = slot_minutes(ctx, 15)
    start = slot(ctx.param("interval_start"), minutes)
    rows = ctx.param("rows")
    if not 1 <= rows <= 10_000:
        raise StepError(f"param 'rows' must be between 1 and 10000, got {rows}")
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(int(start.timestamp()) // 60)
    picked = frame.iloc[rng.integers(0, len(frame), size=rows)].reset_index(drop=True)
    features = [c for c in frame.columns if c != "target"]
    noise = rng.normal(0.0, 0.02, size=(rows, len(features))) * frame[features].std().to_numpy()
    picked[features] = (picked[features].to_numpy() + noise).clip(min=0)
    picked.insert(0, "id", [f"{start:%Y%m%dT%H%M}-{i:05d}" for i in range(rows)])
    if not ctx.param("with_target"):
        picked = picked.drop(columns=["target"])
    ctx.write_parquet("batch", picked)
    ctx.metrics.update(rows=rows, interval_start=start.isoformat())
